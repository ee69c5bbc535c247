"""Photo Style (Deep Photo Style Transfer): the optimisation engine, whose card turns the
photorealism regulariser on by default."""

from backend.engines.optimize import OptimizeEngine

ENGINE = OptimizeEngine
