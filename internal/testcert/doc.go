// Package testcert makes throwaway certificate authorities and
// certificates for tests of mutual TLS: an ECDSA P-256 CA and leaf
// certificates for 127.0.0.1 and localhost, valid for an hour, usable as
// both server and client certificates, written as PEM files.
//
// It is test support only: the keys are generated fresh and never meant to
// protect anything.
package testcert
