"""Training of user models: `python -m backend train cyclegan|pix2pix|adain|mixgan ...`.

Layout (the reference's split of options / data / models, kept apart):
- options.py            the one option set shared by every engine (TrainOptions + CLI flags,
                        hidden aliases for old spellings)
- launch.py             sub-command handler: options from flags, then the loop (lazy torch)
- <engine>.py           light modules named after an engine: `register(train_subparsers)` adds
                        the engine's sub-command; heavy imports happen only when it runs
- <engine>_model.py     the published training recipe of that engine (a common.Recipe:
                        networks, losses, steps, and its phases if it has several)
- data.py               folder datasets (unpaired, paired, content/style), augmentation, and
                        StepDataset for data drawn a whole batch per step (MIXGAN's domains)
- discriminators.py     70x70 PatchGAN, GAN losses, N(0, 0.02) initialisation
- pool.py               the CycleGAN history pool of generated images
- common.py             the loop: device/AMP, phases, progress bar, checkpoints with exact
                        resume, Ctrl-C, sample grids
- export.py             Export (a finished network) and atomic_write, used by common and register
- register.py           writes the finished generator into the models dir as a user model
- synthetic.py          procedural data sets with a known ground-truth mapping (tests, proofs)
- mixgan_eval.py        measurements of the MIXGAN starter model (bench/mixgan_starter.py)

Imports go one way: <engine>.py -> launch -> common -> register -> export, options; the
recipes import common, data, export and options. No module imports one that imports it.
"""
