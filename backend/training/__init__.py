"""Training of user models: `python -m backend train cyclegan|pix2pix|adain|mixgan ...`.

Layout (the reference's split of options / data / models, kept apart):
- options.py            the one option set shared by every engine (TrainOptions + CLI flags)
- launch.py             sub-command handler: options from flags, then the loop (lazy torch)
- <engine>.py           light modules named after an engine: `register(train_subparsers)` adds
                        the engine's sub-command; heavy imports happen only when it runs
- <engine>_model.py     the published training recipe of that engine (networks, losses, steps)
- data.py               folder datasets (unpaired, paired, content/style) and augmentation
- discriminators.py     70x70 PatchGAN, GAN losses, N(0, 0.02) initialisation
- pool.py               the CycleGAN history pool of generated images
- common.py             the loop: device/AMP, progress bar, checkpoints with exact resume,
                        Ctrl-C, sample grids
- register.py           writes the finished generator into the models dir as a user model
- synthetic.py          procedural data sets with a known ground-truth mapping (tests, proofs)
- mixgan*.py            MIXGAN's training (its own loop; same register() hook)
"""
