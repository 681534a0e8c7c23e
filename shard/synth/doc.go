// Package synth generates small synthetic datasets of every sample kind,
// deterministically from a seed: PNG images of coloured shapes with captions
// that describe them ("a red circle on a blue background"), interleaved
// documents, short frame sequences of a moving shape, text documents,
// conversations about images and token sequences. `loom dev`, benchmarks and
// tests use it to get a real dataset without downloading one.
package synth
