package logtest

import "testing"

func TestWriterStop(t *testing.T) {
	w := New(t)
	if n, err := w.Write([]byte("shown")); n != 5 || err != nil {
		t.Fatalf("Write before Stop = %d, %v; want 5, nil", n, err)
	}
	w.Stop()
	if n, err := w.Write([]byte("dropped")); n != 7 || err != nil {
		t.Fatalf("Write after Stop = %d, %v; want 7, nil", n, err)
	}
}
