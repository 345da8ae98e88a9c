import pytest
import torch

from uattr.experiments.job import full_float32


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_a_cuda_job_computes_in_full_float32_and_a_cpu_job_leaves_the_flags(tf32_flags):
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    full_float32("cpu")
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    full_float32("cuda:0")  # sets flags only: no GPU is needed
    assert not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32


def test_a_script_names_itself_in_the_records_it_writes():
    from uattr.experiments.job import command_line, running_command

    with running_command(["--n", "100", "--out", "runs/a b"],
                         program="python tuning/ua_backprop.py"):
        assert command_line() == "python tuning/ua_backprop.py --n 100 --out 'runs/a b'"
        with running_command(["bench", "detection"]):
            assert command_line() == "uattr bench detection"
        assert command_line().startswith("python tuning/ua_backprop.py")
