"""README's set-up commands: the system-package line works as root without sudo and as a user with it, and the
install lines say where CPU torch comes from on other machines."""

import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from eat_testing import PROJECT_ROOT


def setup_block() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Set-up and quickstart", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def fake_command(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("with_sudo", [False, True], ids=["root without sudo", "user with sudo"])
def test_the_apt_line_runs_with_and_without_sudo(tmp_path, with_sudo):
    (apt_line,) = [line for line in setup_block().splitlines() if "apt-get install" in line]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake_command(bin_dir, "apt-get", f'echo "apt-get $*" >> {log}')
    if with_sudo:
        fake_command(bin_dir, "sudo", textwrap.dedent(f'''
            echo "sudo $1" >> {log}
            "$@"
        '''))
    # Only the fakes on PATH: a real sudo or apt-get elsewhere on the machine cannot answer instead.
    result = subprocess.run([shutil.which("bash"), "-c", apt_line], env={"PATH": str(bin_dir)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    expected = ["apt-get update", "apt-get install -y --no-install-recommends ffmpeg"]
    if with_sudo:
        expected = [call for apt_call in expected for call in ("sudo apt-get", apt_call)]
    assert calls == expected


def test_install_lines_pin_this_machine_and_point_elsewhere_to_the_cpu_index():
    block = setup_block()
    assert 'pip install torch==2.13.0 "torchcodec>=0.12,<0.14" -e ".[dev]"' in block
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme.split("## Usage", 1)[0]
