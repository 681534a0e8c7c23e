package shard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// splitMessage splits one encapsulated IPC message (continuation marker,
// metadata length, metadata flatbuffer, body) into its metadata and body,
// without copying. The body length comes from the metadata.
func splitMessage(data []byte) (*ipc.Message, error) {
	if len(data) < 8 || binary.LittleEndian.Uint32(data) != 0xFFFFFFFF {
		return nil, fmt.Errorf("not an IPC message (no continuation marker)")
	}
	n := int64(int32(binary.LittleEndian.Uint32(data[4:])))
	if n <= 0 || 8+n > int64(len(data)) {
		return nil, fmt.Errorf("IPC message metadata length %d outside %d bytes", n, len(data))
	}
	meta := memory.NewBufferBytes(data[8 : 8+n])
	var msg *ipc.Message
	var perr error
	func() {
		defer func() {
			if p := recover(); p != nil {
				perr = fmt.Errorf("undecodable IPC message metadata: %v", p)
			}
		}()
		// The body length is read from the metadata; a body buffer of the
		// rest of the range is a placeholder until it is known.
		probe := ipc.NewMessage(meta, memory.NewBufferBytes(nil))
		bl := probe.BodyLen()
		probe.Release()
		if bl < 0 || 8+n+bl != int64(len(data)) {
			perr = fmt.Errorf("IPC message of %d + %d bytes does not fill its %d-byte range", 8+n, bl, len(data))
			return
		}
		msg = ipc.NewMessage(meta, memory.NewBufferBytes(data[8+n:]))
	}()
	return msg, perr
}

// sliceMessages is an ipc.MessageReader over messages already in memory.
type sliceMessages struct {
	msgs []*ipc.Message
}

func (s *sliceMessages) Message() (*ipc.Message, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}
func (s *sliceMessages) Retain()  {}
func (s *sliceMessages) Release() {}

var schemaMsgs sync.Map // Kind -> []byte: the encapsulated schema message

// schemaMessage returns the encapsulated IPC schema message of kind's
// schema (what a stream starts with).
func schemaMessage(kind Kind) ([]byte, error) {
	if b, ok := schemaMsgs.Load(kind); ok {
		return b.([]byte), nil
	}
	schema, err := Schema(kind)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()[:buf.Len()-8] // drop the end-of-stream marker
	schemaMsgs.Store(kind, b)
	return b, nil
}

// parseSchemaMessage decodes one encapsulated IPC schema message that fills
// b exactly (its metadata length includes the padding).
func parseSchemaMessage(b []byte) (schema *arrow.Schema, err error) {
	if len(b) < 8 || binary.LittleEndian.Uint32(b) != 0xFFFFFFFF {
		return nil, fmt.Errorf("not an IPC message (no continuation marker)")
	}
	if n := int64(int32(binary.LittleEndian.Uint32(b[4:]))); n <= 0 || 8+n != int64(len(b)) {
		return nil, fmt.Errorf("IPC message metadata length %d does not fill its %d bytes", n, len(b))
	}
	defer func() {
		if p := recover(); p != nil {
			schema, err = nil, fmt.Errorf("undecodable IPC schema message: %v", p)
		}
	}()
	eos := []byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}
	rd, err := ipc.NewReader(io.MultiReader(bytes.NewReader(b), bytes.NewReader(eos)), ipc.WithAllocator(goAlloc))
	if err != nil {
		return nil, err
	}
	defer rd.Release()
	return rd.Schema(), nil
}

// checkSchemaMessage checks that b is an IPC schema message whose metadata
// names kind and schema version v.
func checkSchemaMessage(b []byte, kind Kind, v int) error {
	if len(b) == 0 {
		return fmt.Errorf("missing (required from index version 2)")
	}
	s, err := parseSchemaMessage(b)
	if err != nil {
		return err
	}
	md := s.Metadata()
	if got := mdValue(md, "loom.kind"); got != string(kind) {
		return fmt.Errorf("metadata loom.kind %q, the index says kind %q", got, kind)
	}
	if got := mdValue(md, "loom.schema_version"); got != strconv.Itoa(v) {
		return fmt.Errorf("metadata loom.schema_version %q, the index says schema_version %d", got, v)
	}
	return nil
}

func mdValue(md arrow.Metadata, key string) string {
	if i := md.FindKey(key); i >= 0 {
		return md.Values()[i]
	}
	return ""
}
