"""Inspect individual LM neurons (stats, examples, logit effects, links to quanta) and write static pages."""

from .inspect import (
                      DEFAULT_HOOK,
                      CorpusSample,
                      LayerInspector,
                      TokenText,
                      corpus_sample,
                      logit_effects,
                      record_activations,
                      resolve_hook,
)
from .pages import NeuronRecord, index_page, neuron_filename, neuron_page, write_layer, write_neuron
from .quanta_link import ClusterProfile, read_discover

__all__ = ["DEFAULT_HOOK", "CorpusSample", "LayerInspector", "TokenText", "corpus_sample", "logit_effects",
           "record_activations", "resolve_hook", "NeuronRecord", "index_page", "neuron_filename", "neuron_page",
           "write_layer", "write_neuron", "ClusterProfile", "read_discover"]
