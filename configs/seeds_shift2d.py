"""Methods on the 2-D shifts of ``tljax.data.shift2d``: ``seeds_shift2d.py:<method>,<shift>``.

The setting of issue 14 item 7 (``docs/seeds.md``, "Seeds that collapse on 2-D shifts"):
an MLP 2→64→64 (plus the linear head), Adam at a constant 1e-3 (no weight decay), 32 source
+ 32 target points per step, ``STEPS`` steps; ``<shift>`` is ``covariate``, ``label`` or
``conditional`` (``shift2d/<shift>``, 3 classes, data seed 0). Method hyperparameters are
each method's defaults except the adversarial heads, kept small for speed: DANN's, CDAN's,
BSP's and ADDA's discriminator ``(32,)``, MDD's adversarial head 32 wide (the defaults,
1024 wide, take ~25x longer here; they did not collapse either, except ADDA's), and:
DAN's MMD and JAN's JMMD term ramped in over N = 1000 steps like the GRL
(``ramp_max_iters``, off by default) and JAN's at ``method.weight = 0.1`` (at 1 every seed
falls far below source only: ``tljax/methods/jan.py``); BSP's penalty at
``bsp_weight = 2e-6`` instead of TLlib's 2e-4, which collapses here
(``tljax/methods/bsp.py``); ADDA pretrained for ``STEPS`` source steps (what source only
gets), then ``STEPS`` adversarial ones (``train.steps = 2 * STEPS``), its target encoder
anchored to the source classifier (``source_anchor = 100``; the paper's ADDA, 0, collapses
on every seed here: ``tljax/methods/adda.py``). All 1000 source
train points train (no hold-out), so the command line and Python give the same numbers.
Many seeds at once, in one vmapped program::

    python -m experiments.sweep --config=configs/seeds_shift2d.py:dann,conditional \
        --seeds=0,1,2,3,4,5,6,7,8,9 --vmap --workdir=runs/seeds_shift2d

or ``tljax.multiseed.train_seeds(get_config("dann,conditional"), range(10))``.
"""

from tljax.config import base_config

STEPS = 1000


def get_config(arg: str = "dann,conditional"):
    method, shift = arg.split(",")
    c = base_config()
    c.data.task = f"shift2d/{shift}"
    c.data.batch_size = 32
    c.model.backbone = "mlp"
    c.model.backbone_kwargs.hidden = (64, 64)
    c.data.source_val_fraction = 0.0
    if shift == "covariate":  # the default, spelled out so --set can change it
        c.data.task_kwargs.offset = 2.0
    c.method.name = method
    if method in ("dann", "cdan", "bsp", "adda"):
        c.method.hparams.hidden = (32,)
    if method == "mdd":
        c.method.hparams.width = 32
    if method in ("dan", "jan"):  # ramp the (J)MMD term in like the GRL (tljax/methods/dan.py)
        c.method.hparams.ramp_max_iters = 1000.0
    if method == "jan":  # at weight 1 every seed falls ~0.26 below (tljax/methods/jan.py)
        c.method.weight = 0.1
    if method == "bsp":  # TLlib's 2e-4 collapses on 2-D features (tljax/methods/bsp.py)
        c.method.hparams.bsp_weight = 2e-6
    c.optim.optimizer = "adam"
    c.optim.schedule = "constant"
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.0
    c.train.steps = STEPS
    if method == "adda":  # STEPS of source training (as source only's), then STEPS of GAN
        c.method.hparams.pretrain_steps = STEPS
        c.method.hparams.source_anchor = 100.0  # 0 (the paper's) collapses on every seed
        c.train.steps = 2 * STEPS
    c.train.steps_per_call = 50
    c.train.log_every = 250
    c.train.eval_every = STEPS
    c.train.checkpoint_every = STEPS
    c.train.eval_batch_size = 2000
    c.train.progress = False
    c.train.tensorboard = False
    return c
