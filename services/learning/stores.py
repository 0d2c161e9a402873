"""Which knowledge answers and which one learns: the current generation, or a rebuild's until it has caught up.

Called on the learning service's worker thread only, like everything of the library.
"""
from __future__ import annotations

from services.learning.config import LearningConfig
from services.learning.knowledge import Cursor, Knowledge
from services.learning.storage import Storage


class Stores:
    def __init__(self, config: LearningConfig) -> None:
        self.config = config
        self.storage: Storage | None = None
        self.serving: Knowledge | None = None
        self.learning: Knowledge | None = None     # the serving one, or a rebuild's
        self.generation = ""                       # the serving one's
        self.building = ""                         # a rebuild's, until it is switched to
        self.told: dict[str, int] = {}             # what the knowledge left out or evicted, since the start

    def open(self) -> None:
        """Open the index and the knowledge (making the first generation); drop what a crash left behind."""
        if self.storage is None:
            self.storage = Storage(self.config)
        index = self.storage.index
        generations = index.generations()
        if not generations.current:
            index.switch(index.make())
            generations = index.generations()
        for left in [g for g in generations.kept if g not in (generations.current, self.building)]:
            self.storage.drop(left)              # a rebuild that a crash interrupted
        if self.serving is None:
            self.generation = generations.current
            self.serving = self._knowledge(generations.current)
        if self.learning is None:
            self.learning = self._knowledge(self.building) if self.building else self.serving

    def begin_rebuild(self) -> None:
        """Learn into a fresh generation from now on; the current one answers until it is switched to."""
        assert self.storage is not None and self.learning is not None
        if self.building:                        # a rebuild of a stream since recreated: start it over
            self.learning.close()
            self.storage.drop(self.building)
        self.building = self.storage.index.make()
        self.learning = self._knowledge(self.building)

    def switch_to_rebuilt(self) -> Cursor:
        """Answer from the rebuilt generation and drop the old one; returns how far the new one is."""
        assert self.storage is not None and self.serving is not None and self.learning is not None
        old = self.generation
        self.storage.index.switch(self.building)
        self.serving.close()
        self.serving, self.generation, self.building = self.learning, self.building, ""
        self.storage.drop(old)
        return self.learning.cursor()

    def close(self) -> None:
        """Forget every cached profile (a failed batch may have changed them) and close the stores."""
        for knowledge in {id(k): k for k in (self.learning, self.serving) if k is not None}.values():
            knowledge.close()
        self.learning = self.serving = None
        if self.storage is not None:
            self.storage.close()
            self.storage = None

    def _knowledge(self, generation: str) -> Knowledge:
        assert self.storage is not None
        name = self.storage.generation_name(generation)
        knowledge = Knowledge(name, self.storage.settings(name))
        knowledge.told = self.told
        return knowledge
