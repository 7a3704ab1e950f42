"""Forward SDEs of score-based generative modeling: VP (linear/cosine), sub-VP, VE and EDM's
σ(t) = t."""
from sde_lib.base import SDE, ReverseSDE
from sde_lib.edm import EDMSDE
from sde_lib.registry import SDES, build_sde, sde_fields, get_sde
from sde_lib.score_fn import ConditionalScoreFn, ScoreFn
from sde_lib.subvp import subVPSDE
from sde_lib.utils import append_dims, batch_sum, check_int, randn
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE

__all__ = ["SDE", "ReverseSDE", "VPSDE", "subVPSDE", "VESDE", "EDMSDE", "SDES", "get_sde", "build_sde",
           "sde_fields",
           "ScoreFn", "ConditionalScoreFn", "append_dims", "batch_sum", "randn",
           "check_int"]
