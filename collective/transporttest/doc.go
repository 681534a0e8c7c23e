// Package transporttest is the conformance suite every collective.Transport
// implementation passes:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T, world, channels int) []collective.Transport {
//			return inproc.NewNetwork(world, channels).Transports()
//		})
//	}
//
// The factory builds a fresh, connected set of transports (index = rank);
// the suite closes them. It also exports CheckNoLeaks, the goroutine-leak
// check the collective tests use.
package transporttest
