"""Training: recipes (TOML -> validated dataclass) and the trainer (PSLA switches: balanced sampling,
SpecAugment, mixup, weight averaging; defense switches: latent, modality and metric-guided mixup, PGD and
fast adversarial training)."""

from .recipe import Recipe, RecipeError, find_recipe, list_recipes, load_recipe
from .trainer import TrainResult, train

__all__ = ["Recipe", "RecipeError", "TrainResult", "find_recipe", "list_recipes", "load_recipe", "train"]
