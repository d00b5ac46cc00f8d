"""Removal attacks on watermarked models: a registry, one attack family per module.

Every attack is configured when built and called with a model and the attacker's data; it returns a NEW
model (the input is never changed) and declares the access it needs (``weights`` or top-1 ``labels``)::

    from backmark.attacks import AttackData, create_attack, list_attacks
    attack = create_attack("ftal", epochs=20, lr=0.01)
    stolen = attack(marked, AttackData.from_dataset(attacker_split))

Families: the paper's fine-tuning (ftll, ftal, rtll, rtal), large learning-rate fine-tuning (ft-large-lr),
transfer learning (transfer), magnitude pruning (prune), fine-pruning (fine-prune), weight quantisation
(quantize), model extraction (extract), input transformations (jpeg, noise, smooth, input-quantize),
evasion (ood-detector, ensemble) and attacks that know the scheme: overwriting with random images under
random labels (overwrite), embedding the attacker's own key (rekey) and unlearning reverse-engineered
triggers (unlearn); and the rest of the SoK's toolbox (Lukas et al., IEEE S&P 2022): weight shifting
(weight-shift), strong regularisation then fine-tuning (regularize), knowledge distillation from the
suspect's soft outputs (distill), adversarial training (adv-train) and neural laundering (launder).
"""

from backmark.attacks import adv_train as _adv_train
from backmark.attacks import distill as _distill
from backmark.attacks import evasion as _evasion
from backmark.attacks import extraction as _extraction
from backmark.attacks import fine_pruning as _fine_pruning
from backmark.attacks import finetune as _finetune
from backmark.attacks import large_lr as _large_lr
from backmark.attacks import launder as _launder
from backmark.attacks import overwrite as _overwrite
from backmark.attacks import pruning as _pruning
from backmark.attacks import quantization as _quantization
from backmark.attacks import regularize as _regularize
from backmark.attacks import rekey as _rekey
from backmark.attacks import transfer as _transfer
from backmark.attacks import transforms as _transforms
from backmark.attacks import unlearn as _unlearn
from backmark.attacks import weight_shift as _weight_shift
from backmark.attacks.adv_train import AdvTrain
from backmark.attacks.base import (
    Access,
    Attack,
    AttackData,
    LabelAttack,
    Monitor,
    WeightAttack,
    output_layer,
    output_layer_name,
    reinitialised,
)
from backmark.attacks.distill import Distill
from backmark.attacks.evasion import DetectorGuard, Ensemble, EnsembleAttack, OODDetector
from backmark.attacks.extraction import Extraction
from backmark.attacks.fine_pruning import FinePruning
from backmark.attacks.finetune import FTAL, FTLL, RTAL, RTLL
from backmark.attacks.large_lr import LargeLRFineTune, lr_sweep
from backmark.attacks.launder import Launder
from backmark.attacks.overwrite import Overwrite
from backmark.attacks.pruning import MagnitudePruning
from backmark.attacks.quantization import WeightQuantization
from backmark.attacks.registry import (
    AttackInfo,
    attack_names,
    create_attack,
    get_attack,
    list_attacks,
    parse_attack,
    parse_attacks,
    register_attack,
)
from backmark.attacks.regularize import Regularize
from backmark.attacks.rekey import Rekey
from backmark.attacks.transfer import Transfer
from backmark.attacks.transforms import InputQuantize, Jpeg, Noise, Smooth, TransformedModel
from backmark.attacks.unlearn import Unlearn
from backmark.attacks.weight_shift import WeightShift

del _adv_train, _distill, _evasion, _extraction, _fine_pruning, _finetune, _large_lr, _launder
del _overwrite, _pruning, _quantization, _regularize, _rekey, _transfer, _transforms, _unlearn
del _weight_shift

__all__ = [
    "FTAL",
    "FTLL",
    "RTAL",
    "RTLL",
    "Access",
    "AdvTrain",
    "Attack",
    "AttackData",
    "AttackInfo",
    "DetectorGuard",
    "Distill",
    "Ensemble",
    "EnsembleAttack",
    "Extraction",
    "FinePruning",
    "InputQuantize",
    "Jpeg",
    "LabelAttack",
    "LargeLRFineTune",
    "Launder",
    "MagnitudePruning",
    "Monitor",
    "Noise",
    "OODDetector",
    "Overwrite",
    "Regularize",
    "Rekey",
    "Smooth",
    "Transfer",
    "TransformedModel",
    "Unlearn",
    "WeightAttack",
    "WeightQuantization",
    "WeightShift",
    "attack_names",
    "create_attack",
    "get_attack",
    "list_attacks",
    "lr_sweep",
    "output_layer",
    "output_layer_name",
    "parse_attack",
    "parse_attacks",
    "register_attack",
    "reinitialised",
]
