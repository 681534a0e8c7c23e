// Package etcdservertest starts a throwaway embedded etcd for a test.
package etcdservertest
