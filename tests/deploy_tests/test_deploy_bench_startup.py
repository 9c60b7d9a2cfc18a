"""``spikewire bench startup`` runs the daemon cold then warm and reports both (figures in the README)."""

from __future__ import annotations

import json

import pytest
from deploy_util import spawn


@pytest.mark.slow
def test_bench_startup_reports_cold_and_warm() -> None:
    proc = spawn("bench", "startup", "--repeat", "1", "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert len(result["warm_cache_s"]) == 1 and result["warm_cache_median_s"] == result["warm_cache_s"][0]
    assert result["cold_cache_s"] > 0 and result["warm_cache_cpu_median_s"] > 0
    # A warm cache skips compiling: less CPU than the cold start (not a timing target, a cache check).
    assert result["warm_cache_cpu_median_s"] < result["cold_cache_cpu_s"]
