// Package shard stores training data as Arrow IPC files in object storage
// and reads it back deterministically.
//
// A dataset is a prefix in an [ObjectStore] holding shard objects
// (shard-00000.arrow, ...) in the Arrow IPC file format (with footer), and
// one index object (index.json) written last, so that a half-written dataset
// is never visible. The index records the shards' Arrow schema message and,
// for every shard, its size and sha256 and, for every record batch, its
// byte range, row count, sha256 and CRC32C; the [Reader] uses it to fetch
// exactly one range GET per record batch (no footer) and to verify what it
// fetched.
//
// The package is organised along the data flow:
//
//   - schema.go: the six sample kinds ([KindImageText], [KindInterleaved],
//     [KindVideoText], [KindText], [KindConversation], [KindTokens]), their
//     Arrow schemas and the conversion between [Sample] and Arrow columns.
//   - writer.go, index.go: [Writer] cuts samples into record batches and
//     shards of a target size and publishes the [Index].
//   - store*.go: the [ObjectStore] interface with its local filesystem
//     ([FSStore]), S3 ([S3Store], minio-go) and in-memory ([MemStore], the
//     fake) implementations; shard/storetest holds the conformance suite.
//   - reader.go, cache.go: [Reader] gives random access by (shard, row),
//     with a byte-bounded LRU cache, checksum verification and prefetch
//     bounded in bytes ([Reader.Stream], [ReaderOptions.AheadBytes]);
//     adjacent batches share one range GET (all of a shard's: one GET of
//     the whole object), and from a store that streams
//     ([S3Store.StreamSegments]) each batch is checked and decoded as soon
//     as its bytes are in.
//   - sampler.go, mixture.go, pack.go: pure functions of (index, seed,
//     epoch) giving the global sample order, its per-rank slices, weighted
//     mixtures of datasets and sequence packing with per-token loss weights;
//     mixstream.go reads a rank's share of a mixture with prefetch.
//   - ingest*.go: converting image folders with caption JSONL, LLaVA
//     conversation JSON, WebDataset tar shards and plain text or JSONL.
//
// The on-store format is documented, with its version history, in
// docs/data-format.md.
package shard
