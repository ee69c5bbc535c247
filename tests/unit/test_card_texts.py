"""What the cards say to GIMP users: plain words, and dialog labels whose mnemonics neither clash
with each other nor with the keys GIMP's procedure dialog keeps for its own buttons (the
real-GIMP dialog test checks whole dialogs; this catches a card's mistake without GIMP)."""

from __future__ import annotations

import re

from stclient import registry

# _Reset, _Cancel, _OK, _Load Saved Settings, _Save Settings, _Help (libgimp's procedure dialog)
GIMP_BUTTON_KEYS = set("rcolsh")
# the plug-in's own labels in every filter dialog: Pre_view now, Sto_p (the preview), Daemon
# _endpoint, Copy install comman_ds (the model box)
PLUGIN_KEYS = set("vped")
JARGON = ("reference test", "batch-norm", "state_dict", "tensor")


def mnemonic(label: str) -> str:
    match = re.search(r"_(\w)", label)
    assert match, f"label {label!r} has no mnemonic"
    return match.group(1).lower()


def test_option_texts_speak_plainly():
    for card in registry.cards().values():
        for spec in card.options:
            texts = [spec.help, spec.label or "", *spec.choice_labels]
            for text in texts:
                assert not any(word in text.lower() for word in JARGON), (card.name, text)


def test_dialog_labels_of_each_card_have_their_own_keys():
    for card in registry.cards().values():
        keys: dict[str, str] = {}
        for name in card.gimp_arguments:
            spec = card.option(name.replace("-", "_"))
            if spec is None or not spec.label:
                continue                 # style inputs and the model: plug-in labels
            key = mnemonic(spec.label)
            assert key not in GIMP_BUTTON_KEYS | PLUGIN_KEYS, (card.name, spec.label)
            assert key not in keys, (card.name, spec.label, keys[key])
            keys[key] = spec.label
