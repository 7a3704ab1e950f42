"""Score networks (NCSN++ / DDPM++, DDPM, MLP), the `ScoreModel` wrapper and the EMA.

`models.analytic` (exact Gaussian-mixture scores) and `models.convert` (score_sde_pytorch
checkpoints) are imported on their own.
"""
from models.ddpm import DDPM
from models.ema import ExponentialMovingAverage
from models.mlp import MLP
from models.ncsnpp import NCSNpp
from models.presets import PRESETS, get_preset
from models.registry import MODELS, build_model
from models.score_model import ScoreModel

__all__ = ["NCSNpp", "DDPM", "MLP", "MODELS", "build_model", "ScoreModel",
           "ExponentialMovingAverage", "PRESETS", "get_preset"]
