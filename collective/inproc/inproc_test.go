package inproc_test

import (
	"testing"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/inproc"
	"github.com/loomtrain/loom/collective/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, world, channels int) []collective.Transport {
		return inproc.NewNetwork(world, channels).Transports()
	})
}
