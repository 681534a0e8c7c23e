package shard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

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
