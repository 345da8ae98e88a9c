"""uattr's figures leave matplotlib's backend alone and are drawn for real."""

import subprocess
import sys

import numpy as np
import torch

from uattr import viz


def test_importing_uattr_and_drawing_leave_the_users_backend_alone():
    """A notebook's backend (here: svg, chosen before the import) survives ``import uattr``
    and a figure drawn and saved; pyplot holds no figure of uattr's afterwards."""
    script = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import io, torch, uattr\n"
        "from uattr import viz\n"
        "from matplotlib import pyplot as plt\n"
        "fig = viz.image_rows({'a': torch.rand(2, 1, 8, 8)})\n"
        "fig.savefig(io.BytesIO(), format='png')\n"
        "print(matplotlib.get_backend(), len(plt.get_fignums()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["svg", "0"]


def test_a_figure_draws_each_image_it_is_given():
    images = torch.zeros(2, 1, 6, 6)
    images[1] = 1.0
    fig = viz.image_rows({"dark then bright": images})
    fig.canvas.draw()
    drawn = [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    assert len(drawn) == 2
    assert drawn[0].max() == 0 and drawn[1].min() == 1
