"""The local runtime's REPORT line: "Max Memory Used" is the worker's own peak.

``benchmarks/thumbnail_local.py`` reads what thumbnails cost from it; a worker started by
the local cloud's server must not report the server's peak.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from imgcli.localcloud.runtime import FunctionSpec, LambdaRuntime


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's /proc")
def test_the_report_s_max_memory_used_is_the_worker_s_own_not_its_parent_s(
    tmp_path: Path,
) -> None:
    # What a function costs is read from REPORT lines (benchmarks/thumbnail_local.py). The
    # local cloud's server holds every object it stores, so its peak RSS is far above a
    # worker's; here this process plays the big parent. Linux keeps ru_maxrss across exec.
    ballast = bytearray(512 << 20)
    ballast[:: 1 << 12] = b"\x01" * (len(ballast) >> 12)  # touch every page
    del ballast
    source = "def handler(event, context):\n    return {}\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("h.py", source)
    spec = FunctionSpec(
        name="memory",
        arn="arn:aws:lambda:us-east-1:123456789012:function:memory",
        code_sha256="memory",
        zip_bytes=archive.getvalue(),
        handler="h.handler",
        environment={},
        timeout_s=30,
        memory_mb=128,
    )
    runtime = LambdaRuntime(
        workdir=tmp_path,
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        credentials=("a", "b"),
    )
    try:
        result = runtime.invoke(spec, b"{}")
    finally:
        runtime.shutdown()
    used = re.search(r"Max Memory Used: (\d+) MB", result.log)
    assert used is not None, result.log
    # A worker that imports nothing uses about 10-20 MB; the parent peaked above 512 MB.
    assert int(used.group(1)) < 256
