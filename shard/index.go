package shard

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// IndexName is the object name of a dataset's index, under its prefix.
const IndexName = "index.json"

// IndexFormat identifies the index document; IndexVersion is the version
// this build writes. It reads every version from 1 to IndexVersion:
//
//   - 1: shards, batches (byte range, rows, sha256, CRC32C), footer offsets.
//   - 2: adds Schema, the Arrow schema message every shard starts with, so a
//     reader decodes batches without fetching any shard's footer.
const (
	IndexFormat  = "loom-shards"
	IndexVersion = 2
)

// Index describes a published dataset. It is written last, so a dataset is
// visible only once all its shards are stored.
type Index struct {
	Format        string `json:"format"`
	Version       int    `json:"version"`
	Kind          Kind   `json:"kind"`
	SchemaVersion int    `json:"schema_version"`
	// Schema (version 2 on) is the encapsulated Arrow IPC schema message
	// (continuation marker, length, flatbuffer, padding) that follows the
	// magic in every shard, base64 in JSON. Its metadata must name Kind and
	// SchemaVersion.
	Schema SchemaMessage `json:"schema,omitempty"`
	Rows   int64         `json:"rows"`
	Bytes  int64         `json:"bytes"`
	Shards []ShardInfo   `json:"shards"`
}

// SchemaMessage is an encapsulated Arrow IPC schema message; in JSON, a
// base64 string.
type SchemaMessage []byte

// UnmarshalJSON decodes the base64 string, naming the field on error.
func (m *SchemaMessage) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("field schema: %w", err)
	}
	d, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("field schema: %w", err)
	}
	*m = d
	return nil
}

// ShardInfo describes one Arrow IPC file of a dataset.
type ShardInfo struct {
	Key          string      `json:"key"` // relative to the dataset prefix
	Size         int64       `json:"size"`
	Rows         int64       `json:"rows"`
	SHA256       string      `json:"sha256"`
	FooterOffset int64       `json:"footer_offset"` // start of the footer (end of the last batch)
	Batches      []BatchInfo `json:"batches"`
}

// BatchInfo is one record batch (an encapsulated IPC message: metadata and
// body) inside a shard. Both checksums cover the batch's bytes: the Reader
// checks CRC32C on every fetch (hardware-accelerated, so checking costs a
// small fraction of the transfer), and `loom data verify` (or a Reader with
// VerifySHA256) checks SHA256 as well.
type BatchInfo struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Rows   int64  `json:"rows"`
	SHA256 string `json:"sha256"`
	CRC32C uint32 `json:"crc32c"`
}

// ParseIndex decodes and checks an index document. name (the object key)
// is used in error messages.
func ParseIndex(data []byte, name string) (*Index, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ix Index
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("index %s: %w", name, err)
	}
	if err := ix.Validate(); err != nil {
		return nil, fmt.Errorf("index %s: %w", name, err)
	}
	return &ix, nil
}

// Validate checks the index's internal consistency: known format, version
// and kind; row and byte totals; batch ranges contiguous, 8-byte aligned,
// inside the shard and ending at the footer; unique shard keys.
func (ix *Index) Validate() error {
	if ix.Format != IndexFormat {
		return fmt.Errorf("field format: %q, want %q", ix.Format, IndexFormat)
	}
	if ix.Version < 1 || ix.Version > IndexVersion {
		return fmt.Errorf("field version: %d, this build reads versions 1..%d", ix.Version, IndexVersion)
	}
	if _, err := ParseKind(string(ix.Kind)); err != nil {
		return fmt.Errorf("field kind: %w", err)
	}
	if ix.SchemaVersion < 1 || ix.SchemaVersion > SchemaVersion {
		return fmt.Errorf("field schema_version: %d, this build reads versions 1..%d", ix.SchemaVersion, SchemaVersion)
	}
	switch {
	case ix.Version < 2 && len(ix.Schema) > 0:
		return fmt.Errorf("field schema: not part of index version %d", ix.Version)
	case ix.Version >= 2:
		if err := checkSchemaMessage(ix.Schema, ix.Kind, ix.SchemaVersion); err != nil {
			return fmt.Errorf("field schema: %w", err)
		}
	}
	var rows, size int64
	seen := map[string]bool{}
	for i := range ix.Shards {
		s := &ix.Shards[i]
		where := fmt.Sprintf("shards[%d] (%s)", i, s.Key)
		if err := ValidKey(s.Key); err != nil {
			return fmt.Errorf("%s: key: %w", where, err)
		}
		if seen[s.Key] {
			return fmt.Errorf("%s: duplicate key", where)
		}
		seen[s.Key] = true
		if err := checkHex(s.SHA256); err != nil {
			return fmt.Errorf("%s: sha256: %w", where, err)
		}
		if len(s.Batches) == 0 {
			return fmt.Errorf("%s: no batches", where)
		}
		var brows int64
		pos := s.Batches[0].Offset
		if pos < 8 {
			return fmt.Errorf("%s: batches[0] offset %d inside the file header", where, pos)
		}
		for j, b := range s.Batches {
			if b.Offset != pos {
				return fmt.Errorf("%s: batches[%d] offset %d, want %d (batches must be contiguous)", where, j, b.Offset, pos)
			}
			if b.Offset%8 != 0 || b.Length%8 != 0 || b.Length <= 0 {
				return fmt.Errorf("%s: batches[%d] range [%d, +%d) not 8-byte aligned or empty", where, j, b.Offset, b.Length)
			}
			if b.Rows <= 0 {
				return fmt.Errorf("%s: batches[%d] rows %d", where, j, b.Rows)
			}
			if err := checkHex(b.SHA256); err != nil {
				return fmt.Errorf("%s: batches[%d] sha256: %w", where, j, err)
			}
			if b.Length > s.Size || pos > s.Size-b.Length {
				return fmt.Errorf("%s: batches[%d] range [%d, %d) beyond size %d", where, j, b.Offset, b.Offset+b.Length, s.Size)
			}
			pos += b.Length
			brows += b.Rows
		}
		if s.FooterOffset != pos {
			return fmt.Errorf("%s: footer_offset %d, want %d (end of the last batch)", where, s.FooterOffset, pos)
		}
		if s.Size-s.FooterOffset < 10 {
			return fmt.Errorf("%s: %d bytes after the last batch, too few for a footer", where, s.Size-s.FooterOffset)
		}
		if brows != s.Rows {
			return fmt.Errorf("%s: rows %d, but its batches hold %d", where, s.Rows, brows)
		}
		rows += s.Rows
		size += s.Size
	}
	if rows != ix.Rows {
		return fmt.Errorf("field rows: %d, but the shards hold %d", ix.Rows, rows)
	}
	if size != ix.Bytes {
		return fmt.Errorf("field bytes: %d, but the shards add up to %d", ix.Bytes, size)
	}
	return nil
}

func checkHex(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("%q is not 64 hex digits", s)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

// Marshal encodes the index as indented JSON.
func (ix *Index) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(ix, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ShardRows returns the row count of each shard, the input of the sampler.
func (ix *Index) ShardRows() []int64 {
	out := make([]int64, len(ix.Shards))
	for i, s := range ix.Shards {
		out[i] = s.Rows
	}
	return out
}

// locate returns the batch of shard s holding row, and the row's position
// in that batch.
func (s *ShardInfo) locate(row int64) (batch int, inBatch int64, ok bool) {
	if row < 0 || row >= s.Rows {
		return 0, 0, false
	}
	// Batches are few (tens per shard): a linear scan is fast enough and
	// needs no extra state.
	for i, b := range s.Batches {
		if row < b.Rows {
			return i, row, true
		}
		row -= b.Rows
	}
	return 0, 0, false
}

// firstRow returns the shard-relative row number of batch b's first row.
func (s *ShardInfo) firstRow(b int) int64 {
	var n int64
	for i := 0; i < b; i++ {
		n += s.Batches[i].Rows
	}
	return n
}
