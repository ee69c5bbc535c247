"""Photo Style (Luan et al. 2017, Deep Photo Style Transfer): the optimisation engine with the
photorealism regulariser on, for "make my photo feel like that photo"."""

import dataclasses

from stclient.cards.optimize import CARD as OPTIMIZE

CARD = dataclasses.replace(
    OPTIMIZE,
    name="photo",
    title="Photo Style (Deep Photo)",
    menu_label="Photo Style (Deep Photo)...",
    description="Give a photo the look of another photo while it stays a photograph (Deep "
                "Photo Style Transfer, Luan et al. 2017)",
    options=tuple(dataclasses.replace(spec, default=True) if spec.name == "photo" else spec
                  for spec in OPTIMIZE.options),
    gimp_arguments=tuple(a for a in OPTIMIZE.gimp_arguments if a != "photo"),
    order=51,
)
