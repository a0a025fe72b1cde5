"""Recipes layer: whole-model procedures built on the techniques: the evaluate -> compress -> re-evaluate
-> distill pipeline (:mod:`.pipeline`), mixed precision (:mod:`.mixed`), distillation (:mod:`.distill`) and
the reports they write (:mod:`.report`).
"""
