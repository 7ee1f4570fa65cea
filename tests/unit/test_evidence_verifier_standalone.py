"""The offline verifier needs only the standard library and `cryptography`: run as a
plain script in a fresh interpreter where importing Flask, SQLAlchemy, the app or any
network client fails, it still checks a package and gives its verdict."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from taskforce.evidence import packages, verify

BLOCKED = ("flask", "apiflask", "sqlalchemy", "taskforce", "celery", "minio", "urllib3",
           "requests", "neo4j", "redis", "psycopg", "socket", "http", "ssl")


def _package(tmp_path: Path) -> Path:
    """A minimal signed package written by the same code the app uses."""
    from datetime import UTC, datetime

    from taskforce.evidence import reports

    key = packages.Ed25519PrivateKey.generate()
    spec = packages.PackageSpec(
        number="TEST-P01", case_number="TEST", case_title="Test", agency="Test PD",
        created_by="tester", created_at=datetime.now(UTC), bates_prefix="T",
        entries=[packages.PackageEntry(
            number="TEST-E0001", description="Bytes", kind="digital", source="other",
            size=5, sha256="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            md5="5d41402abc4b2a76b9719d911017c592", collected_by="tester",
            collected_at=datetime.now(UTC), collected_place="", content_type="text/plain",
            filename="hello.txt", custody_events=2, custody_head="0" * 64,
            open_bytes=lambda: iter([b"hello"]))],
        withheld=[], redaction={},
        custody_report=lambda: reports.custody_report(
            case_number="TEST", case_title="Test", items=[], generated_by="tester",
            generated_at=datetime.now(UTC)),
        certification=lambda items, **kw: reports.certification(
            package_number="TEST-P01", case_number="TEST", agency="Test PD",
            prepared_by="tester", prepared_at=datetime.now(UTC), withheld=0, items=[],
            **kw))
    path = tmp_path / "p.zip"
    packages.write_package(path, spec, key)
    return path


def _run_isolated(*args: str) -> subprocess.CompletedProcess:
    guard = textwrap.dedent(f"""
        import importlib.abc, runpy, sys
        BLOCKED = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in BLOCKED:
                    raise ImportError('blocked in this test: ' + name)
                return None
        for name in list(sys.modules):
            if name.split('.')[0] in BLOCKED:
                del sys.modules[name]
        sys.meta_path.insert(0, Block())
        sys.argv = ['taskforce-verify', *sys.argv[1:]]
        runpy.run_path({verify.__file__!r}, run_name='__main__')
    """)
    return subprocess.run([sys.executable, "-I", "-c", guard, *args], check=False,
                          capture_output=True,
                          text=True, timeout=60)


def test_the_verifier_runs_without_the_app_or_the_network(tmp_path):
    path = _package(tmp_path)
    good = _run_isolated(str(path))
    assert good.returncode == 0, good.stderr
    assert "INTACT" in good.stdout
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, b"HELLO" if info.filename.endswith("hello.txt") else data)
    result = _run_isolated(str(bad))
    assert result.returncode == 1 and "items/TEST-E0001/hello.txt" in result.stdout


def test_the_installed_console_script_loads_no_part_of_the_app(tmp_path):
    """`taskforce-verify` (the entry point pip installs) imports the package's
    __init__ files on the way to verify.py: they must import nothing of Flask."""
    path = _package(tmp_path)
    probe = textwrap.dedent("""
        import sys
        from taskforce.evidence.verify import main
        code = main(sys.argv[1:])
        loaded = sorted({m.split('.')[0] for m in sys.modules}
                        & {'flask', 'apiflask', 'sqlalchemy', 'celery', 'minio', 'neo4j'})
        print('LOADED', loaded)
        sys.exit(code)
    """)
    result = subprocess.run([sys.executable, "-c", probe, str(path)], check=False,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "INTACT" in result.stdout and "LOADED []" in result.stdout
