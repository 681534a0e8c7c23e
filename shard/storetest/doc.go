// Package storetest is the conformance suite for shard.ObjectStore. Every
// implementation runs it: the local filesystem, the in-memory fake, the
// embedded gofakes3 server and versitygw as a separate process.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, myStore, storetest.Options{LargeObject: 20 << 20})
//	}
package storetest
