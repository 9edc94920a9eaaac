import subprocess
import sys

import pytest

from imitate.cli import COMMANDS, build_parser


@pytest.mark.parametrize("stage", sorted(COMMANDS))
def test_every_stage_has_help(stage, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser(stage).parse_args([stage, "--help"])
    assert exit_.value.code == 0
    assert "usage: imitate " + stage in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "imitate", "--help"], capture_output=True, text=True, check=True)
    for stage in COMMANDS:
        assert stage in out.stdout


def test_light_stages_do_not_import_torch():
    code = "import sys; from imitate.cli import build_parser; build_parser('sections'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
