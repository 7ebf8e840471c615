# Makes the repository's top-level packages importable when pytest runs from a checkout.
