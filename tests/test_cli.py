"""python -m rfviz, run in-process (main(argv)) and once as a real subprocess."""

import subprocess
import sys

import pytest
import torchvision

from rfviz.__main__ import main
from rfviz.tracing import receptive_field, trace


def test_one_layer(capsys):
    assert main(["resnet50", "--layer", "layer3", "--input-size", "224"]) == 0
    expected = receptive_field(torchvision.models.resnet50(weights=None), "layer3", 224)
    assert capsys.readouterr().out.strip().endswith(f"receptive field {expected}")


def test_whole_table_has_one_line_per_op(capsys):
    assert main(["resnet18", "--input-size", "160", "128"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(trace(torchvision.models.resnet18(weights=None), (160, 128)))
    assert lines[0].startswith("layer")


def test_unknown_model_lists_close_names(capsys):
    assert main(["resnt50"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnt50'. Did you mean: resnet50" in err and "vgg16" in err


def test_unknown_layer_is_an_error_not_a_traceback(capsys):
    assert main(["resnet18", "--layer", "layer9"]) == 2
    assert "closest: 'layer4'" in capsys.readouterr().err


def test_help_as_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "rfviz", "--help"], capture_output=True,
                            text=True, check=True)
    assert "--layer" in result.stdout and "example: python -m rfviz resnet50" in result.stdout


def test_missing_model_exits_2(capsys):
    assert main([]) == 2
    assert "give a model name" in capsys.readouterr().err


def test_bad_input_size_is_an_argparse_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["resnet18", "--input-size", "x"])
    assert exit_info.value.code == 2
