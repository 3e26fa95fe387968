"""Two measured recipes for fine-tuning, picked by what the run's validation can check.

* **new classes**, when whole classes are held out to validate (the encoder
  will search classes it never saw, and early stopping watches exactly that):
  the default encoder's pooling (R-MAC, so epoch 0 is the off-the-shelf
  encoder), learning rate 3e-4, epochs of at least 50 batches. Chosen on
  classes held out of the training classes of VOC crops and LFW people
  (``bench/results/finetune-sweep-voc.md``, ``-lfw.md``).
* **same classes**, when only held-out images of the training classes can
  validate (too few classes, or a data set's own validation split, as in
  MedMNIST: the same classes searched in a new domain): GeM with a learnable
  p, learning rate 1e-4, one pass over the images per epoch. The harder recipe
  fits such validation images further without searching the test images
  better (``bench/results/finetune.md``, BreastMNIST and PneumoniaMNIST).

Options given explicitly (``--lr``, ``--pooling`` ...) override the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    name: str
    pooling: str
    lr: float
    head_lr: float
    epoch_batches: int  # batches per epoch at least (0: one pass over the training images)


NEW_CLASSES = Recipe("new classes", pooling="rmac", lr=3e-4, head_lr=3e-4, epoch_batches=50)
SAME_CLASSES = Recipe("same classes", pooling="gem", lr=1e-4, head_lr=1e-4, epoch_batches=0)


def recipe_for(validation_mode: str) -> Recipe:
    """The recipe for a run validated by ``validation_mode`` (``cbir.training.validation.MODES``, or ``tuples``):
    held-out images of the training classes train gently, everything else by the new-classes recipe."""
    return SAME_CLASSES if validation_mode == "images" else NEW_CLASSES
