"""Inspect individual LM neurons (stats, examples, logit effects, links to quanta) and write static pages."""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "attribution": ["QuantaNeurons", "QuantumNeurons", "link_quanta", "quanta_neurons"],
    "config": ["DEFAULT_HOOK", "LinkConfig", "NeuronConfig", "PagesConfig", "ScanConfig", "resolve_hook"],
    "dashboard": ["index_rows", "quantum_links", "scan_records", "serves", "write_scan_pages"],
    "inspect": ["CorpusSample", "LayerInspector", "LogitEffects", "TokenText", "corpus_sample", "logit_effects"],
    "pages": ["LayerPages", "NeuronRecord", "index_page", "neuron_filename", "neuron_page", "write_layer", "write_neuron"],
    "quanta_link": ["ClusterProfile", "discover_corpus", "read_discover"],
    "scan": ["NeuronScan", "NeuronStats", "QuantileBin", "run_scan", "scan_neurons", "scan_windows"],
})
