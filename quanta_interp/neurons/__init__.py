"""Inspect individual LM neurons (stats, examples, logit effects, links to quanta) and write static pages."""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": ["NeuronConfig"],
    "inspect": ["DEFAULT_HOOK", "CorpusSample", "LayerInspector", "TokenText", "corpus_sample", "logit_effects", "record_activations", "resolve_hook"],
    "pages": ["NeuronRecord", "index_page", "neuron_filename", "neuron_page", "write_layer", "write_neuron"],
    "quanta_link": ["ClusterProfile", "read_discover"],
})
