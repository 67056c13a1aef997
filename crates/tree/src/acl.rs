//! ACL schemes: world, auth, digest (SHA-1/base64, superDigest), ip. (Skeleton.)
