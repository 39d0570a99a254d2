import subprocess
import sys


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from pbsvllm.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('paramiko', 'jinja2', 'pynvml') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Commands:" in out
    assert out.strip().endswith("HEAVY="), out


def test_version():
    out = subprocess.run([sys.executable, "-m", "pbsvllm", "--version"], capture_output=True, text=True, check=True)
    assert "pbsvllm, version" in out.stdout
