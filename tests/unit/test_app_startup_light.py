"""The web process starts light: libraries that only some requests need are imported
where they are used, not by create_app. Checked in a fresh interpreter (this test
session has imported everything already), so the memory of every web worker does
not creep back up as imports are added at the top of modules."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# Imported on first use only. (name: what needs it)
LAZY = {
    "neo4j": "graph questions, projection, matching (graph/client.py)",
    "igraph": "key players and communities (graph/analysis.py)",
    "h3": "operation deconfliction cells (deconfliction/geo.py)",
    "minio": "the S3 evidence store (evidence/storage.py)",
    "fpdf": "PDF reports and labels",
    "followthemoney": "FtM export",
}

REPO = Path(__file__).resolve().parents[2]


def test_create_app_does_not_import_the_heavy_libraries(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from taskforce import create_app
        create_app(environ={{
            "TASKFORCE_ENV": "test",
            "TASKFORCE_INSTANCE": {str(tmp_path / "instance")!r},
            "SECRET_KEY": "test-only-secret-key-not-for-production",
            "DATABASE_URL": "sqlite:///{tmp_path / "app.db"}",
        }})
        rss = next(int(line.split()[1]) for line in open("/proc/self/status")
                   if line.startswith("VmRSS:"))
        print(json.dumps({{"loaded": sorted({{m.split(".")[0] for m in sys.modules}}),
                          "rss_kb": rss}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    loaded = [name for name in LAZY if name in report["loaded"]]
    assert not loaded, (f"create_app imported {loaded} ({report['rss_kb'] // 1024} MB "
                        "resident): import them inside the functions that use them")
