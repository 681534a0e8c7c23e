package trainer

import (
	"fmt"
	"testing"
)

// TestScoreRetrievalPrior: a caption that is likely a priori (low loss
// under every image) must not win image→text retrieval for every image.
// With raw likelihood scoring it did, and image→text R@1 and exact match
// sat at exactly 1/N in qwen-vl, vila and lwm (issue 15).
func TestScoreRetrievalPrior(t *testing.T) {
	const n = 6
	loss := make([][]float64, n)
	captions := make([]string, n)
	for i := range n {
		captions[i] = fmt.Sprintf("caption %d", i)
		loss[i] = make([]float64, n)
		for j := range n {
			// Caption 0 is short and common: 1.0 under any image; the
			// others 3.0. Each image lowers its own caption's loss by 0.5.
			loss[i][j] = 3
			if j == 0 {
				loss[i][j] = 1
			}
			if i == j {
				loss[i][j] -= 0.5
			}
		}
	}
	t2i, i2t, exact := scoreRetrieval(loss, captions)
	if t2i != 1 || i2t != 1 || exact != 1 {
		t.Errorf("scoreRetrieval = text→image %.3f, image→text %.3f, exact %.3f; want 1, 1, 1 (each image makes its own caption likelier than the others do)", t2i, i2t, exact)
	}
	// Without image information (every row the same) nothing is found
	// beyond the first of tied candidates.
	for i := range n {
		for j := range n {
			loss[i][j] = float64(j)
		}
	}
	_, i2t, _ = scoreRetrieval(loss, captions)
	if i2t != 1.0/n {
		t.Errorf("image→text with losses that ignore the image = %.3f, want %.3f (only the tie's first pick is right)", i2t, 1.0/n)
	}
}
