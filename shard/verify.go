package shard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"strings"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// DecodeImages fully decodes every image (default: only headers are
	// decoded and compared with the stored size).
	DecodeImages bool
	// OnShard, if set, is called after each shard is checked.
	OnShard func(shard int, faults []string)
}

// VerifyReport is what Verify found. A dataset is healthy when Faults is
// empty.
type VerifyReport struct {
	Index      *Index
	Shards     int
	Batches    int
	Rows       int64
	Bytes      int64
	Faults     []string // each names the object and, where it applies, the batch or row
	Unindexed  []string // objects under the prefix that the index does not name
	IndexError error    // set when the index itself cannot be read
}

// OK reports whether no fault was found.
func (v *VerifyReport) OK() bool { return len(v.Faults) == 0 && v.IndexError == nil }

// Verify reads a whole dataset and checks everything the index promises:
// each shard's size and sha256, each batch's sha256 and row count, the Arrow
// footer and schema, every sample's fields and its images. It reports every
// fault it finds rather than stopping at the first. The error return is for
// failures to run at all (a cancelled context); faults go in the report.
func Verify(ctx context.Context, store ObjectStore, prefix string, opts VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{}
	ix, err := ReadIndex(ctx, store, prefix)
	if err != nil {
		rep.IndexError = err
		rep.Faults = append(rep.Faults, err.Error())
		return rep, nil
	}
	rep.Index = ix
	r := NewReader(store, prefix, ix, ReaderOptions{CacheBytes: 1})
	named := map[string]bool{JoinKey(prefix, IndexName): true}
	for s := range ix.Shards {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		named[r.objectName(s)] = true
		faults := verifyShard(ctx, r, s, opts, rep)
		rep.Faults = append(rep.Faults, faults...)
		if opts.OnShard != nil {
			opts.OnShard(s, faults)
		}
	}
	listPrefix := prefix
	if listPrefix != "" && !strings.HasSuffix(listPrefix, "/") {
		listPrefix += "/"
	}
	err = store.List(ctx, listPrefix, func(in ObjectInfo) error {
		if !named[in.Key] {
			rep.Unindexed = append(rep.Unindexed, in.Key)
		}
		return nil
	})
	if err != nil {
		rep.Faults = append(rep.Faults, fmt.Sprintf("list %s: %v", listPrefix, err))
	}
	return rep, nil
}

func verifyShard(ctx context.Context, r *Reader, s int, opts VerifyOptions, rep *VerifyReport) []string {
	si := &r.index.Shards[s]
	obj := r.objectName(s)
	var faults []string
	info, err := r.store.Stat(ctx, obj)
	if err != nil {
		return []string{err.Error()}
	}
	if info.Size != si.Size {
		faults = append(faults, fmt.Sprintf("object %s: %d bytes, the index says %d (truncated or replaced)", obj, info.Size, si.Size))
		if info.Size < si.Size {
			return faults
		}
	}
	rep.Shards++
	rep.Bytes += si.Size
	whole := sha256.New()
	head, err := r.store.GetRange(ctx, obj, 0, si.Batches[0].Offset)
	if err != nil {
		return append(faults, fmt.Sprintf("object %s: header: %v", obj, err))
	}
	if !bytes.HasPrefix(head, []byte("ARROW1")) {
		faults = append(faults, fmt.Sprintf("object %s: does not start with the Arrow file magic", obj))
	} else if r.index.Version >= 2 && !bytes.Equal(head[min(8, len(head)):], r.index.Schema) {
		faults = append(faults, fmt.Sprintf("object %s: its schema message differs from the index's schema field", obj))
	}
	whole.Write(head)
	footer, ferr := r.footer(ctx, s)
	if ferr != nil {
		faults = append(faults, ferr.Error())
	}
	for b := range si.Batches {
		k := batchKey{s, b}
		data, err := r.store.GetRange(ctx, obj, si.Batches[b].Offset, si.Batches[b].Length)
		if err != nil {
			faults = append(faults, fmt.Sprintf("%s: %v", r.where(k), err))
			continue
		}
		whole.Write(data)
		rep.Batches++
		if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != si.Batches[b].SHA256 {
			faults = append(faults, fmt.Sprintf("%s: sha256 does not match the index: corrupt", r.where(k)))
			continue
		}
		if crc32.Checksum(data, castagnoli) != si.Batches[b].CRC32C {
			faults = append(faults, fmt.Sprintf("%s: crc32c does not match the index (the sha256 does): corrupt index", r.where(k)))
			continue
		}
		if ferr != nil {
			continue
		}
		samples, err := r.decodeBatch(k, data, true)
		if err != nil {
			faults = append(faults, err.Error())
			continue
		}
		rep.Rows += int64(len(samples))
		if opts.DecodeImages {
			first := si.firstRow(b)
			for i := range samples {
				if err := decodeImages(&samples[i]); err != nil {
					faults = append(faults, fmt.Sprintf("object %s row %d (id %q): %v", obj, first+int64(i), samples[i].ID, err))
				}
			}
		}
	}
	if ferr == nil {
		whole.Write(footer)
		if got := hex.EncodeToString(whole.Sum(nil)); got != si.SHA256 && info.Size == si.Size {
			faults = append(faults, fmt.Sprintf("object %s: sha256 %s, the index says %s", obj, got[:16], si.SHA256[:16]))
		}
	}
	return faults
}

func decodeImages(s *Sample) error {
	var errs []error
	dec := func(what string, im *Image) {
		if _, _, err := image.Decode(bytes.NewReader(im.Data)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if s.Image != nil {
		dec("image", s.Image)
	}
	for i := range s.Items {
		if s.Items[i].Image != nil {
			dec(fmt.Sprintf("item %d", i), s.Items[i].Image)
		}
	}
	for i := range s.Frames {
		dec(fmt.Sprintf("frame %d", i), &s.Frames[i])
	}
	for i := range s.Images {
		dec(fmt.Sprintf("image %d", i), &s.Images[i])
	}
	return errors.Join(errs...)
}
