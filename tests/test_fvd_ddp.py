"""FVD (and CRPS / FrameQuality) give the same value on 2 DDP ranks as on one process.

The workers run in a separate interpreter (tests/_fvd_ddp_worker.py) so process-group
state and spawned children never touch the pytest process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed support")
def test_metrics_identical_under_two_process_ddp(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "_fvd_ddp_worker.py"), str(out), str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    single, ranks = result["single"], result["ranks"]
    assert single["fvd"] > 0 and single["local_real_n"] == 11
    # The ranks really held different, uneven shards of the data...
    assert [r["local_real_n"] for r in ranks] == [8, 3]
    # ...yet every rank reports the single-process value (states are all-reduced sums).
    for rank_result in ranks:
        for key, value in single.items():
            if key not in ("local_real_n", "cached"):
                assert rank_result[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    # The real-feature cache under DDP: rank 0 saved the clips of both ranks, and the next pass read all of them.
    for rank_result in ranks:
        assert rank_result["cache_entries"] == 11
        first, second = rank_result["cached_first"], rank_result["cached_second"]
        assert first["real"] == second["real"] == 11 and first["from_cache"] == 0 and second["from_cache"] == 11
        assert first["fvd"] == pytest.approx(single["cached"]["fvd"], rel=1e-6)  # float32 features, other batches
        assert second["fvd"] == pytest.approx(first["fvd"], rel=1e-6)
