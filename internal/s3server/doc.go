// Package s3server runs an S3-compatible server inside the process, for
// `loom dev` and for tests of packages that read or write object storage.
//
// It wraps github.com/johannesboyne/gofakes3 on either a local directory
// (the s3afero backend: buckets are subdirectories of dir/buckets) or memory,
// bound to 127.0.0.1 on a free port or to Options.Addr (`loom s3`). It checks
// no credentials and no signatures: anyone who reaches its address reads and
// writes everything. The access and secret keys it reports are there so that
// clients are configured exactly as they would be against a real store. Clients must upload with
// minio.PutObjectOptions.DisableContentSha256 (shard.S3Store does): with
// aws-chunked uploads over plain HTTP, gofakes3 v1.2.0 stores the chunk
// signatures inside multipart objects.
//
// Limits inherited from gofakes3: multipart parts are held in memory until
// the upload completes, and the directory backend writes objects in place
// (a crash mid-write can leave a partial object). It is a development and
// test server, not a production store.
package s3server
