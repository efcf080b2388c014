"""Self-supervised pre-training and embedding evaluation.

- `.npid`: NPID instance discrimination (memory bank, NCE and exact non-parametric softmax);
- `.training`: `pretrain(recipe)` -- the loop behind recipes with a ``[pretrain]`` table
  (``python -m robustlab.zoo train vggish.npid_synthav``), kNN accuracy logged per epoch;
- `.knn`: the weighted kNN vote (faiss, through `robustlab.geometry.knn.knn_search`) and a
  linear probe, on any model's embeddings (`embedding_evaluation`);
- `.checkpoint_init`: fine-tuning from a stored checkpoint (recipe ``[init]``).

Example:
    >>> import robustlab.zoo as zoo
    >>> enc = zoo.get_or_train("vggish.npid_synthav")            # NPID, no labels
    >>> enc.card["pretrain"]["history"]                          # kNN accuracy per pre-training epoch
    >>> ft = zoo.get_or_train("vggish.ftnpid_synthav")           # fine-tuned from it ([init] from = ...)
"""

from .checkpoint_init import copy_backbone, freeze_backbone, frozen_train_mode, initialize_from
from .knn import KNNEval, embedding_evaluation, knn_evaluate, linear_probe, weighted_knn_scores
from .npid import MemoryBank, estimate_z, nce_loss, softmax_loss
from .training import pretrain

__all__ = [
    "KNNEval", "MemoryBank", "copy_backbone", "embedding_evaluation", "estimate_z", "freeze_backbone",
    "frozen_train_mode", "initialize_from", "knn_evaluate", "linear_probe", "nce_loss", "pretrain",
    "softmax_loss", "weighted_knn_scores",
]
