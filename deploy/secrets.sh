#!/bin/sh
# Make every secret a deid-workers deployment needs, as files, in one private folder:
#
#   deploy/secrets.sh [FOLDER]        (default: ./secrets; files that exist are kept)
#
#   deid-secret.key             the cluster key (DEID_SECRET_FILE): pseudonyms, signatures of
#                               runs, sealing of identifiers in Redis; producer and workers
#   redis-<user>.password       one Redis password per user: producer, worker, flower, keda,
#                               probe (the health checks' user: PING only)
#   redis-keda.username, redis-keda.tls   the KEDA trigger's user name and TLS switch
#   users.acl                   the Redis ACL (deploy/redis/users.acl.template) with each
#                               password's SHA-256, never the password itself
#   flower.auth                 Flower's basic auth, admin:<password>
#   tls/ca.crt, tls/ca.key      a private CA (keep ca.key offline once the certificates exist)
#   tls/redis.crt, tls/redis.key  Redis' certificate for the names redis,
#                               redis.deid.svc.cluster.local and localhost
#
# Needs only a POSIX shell and openssl. Run it once per deployment; re-running keeps what
# exists (delete a file to make a new one, then restart what reads it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-secrets}
umask 077
mkdir -p "$dir/tls"
chmod 700 "$dir" "$dir/tls"

random() { openssl rand -hex 32; }
keep() { [ -s "$1" ] || { "$2" > "$1"; }; }

keep "$dir/deid-secret.key" random
for user in producer worker flower keda probe; do
  keep "$dir/redis-$user.password" random
done
[ -s "$dir/redis-keda.username" ] || printf keda > "$dir/redis-keda.username"
[ -s "$dir/redis-keda.tls" ] || printf enable > "$dir/redis-keda.tls"
[ -s "$dir/flower.auth" ] || printf 'admin:%s' "$(openssl rand -hex 16)" > "$dir/flower.auth"

sha() { printf %s "$(cat "$1")" | openssl dgst -sha256 -r | cut -d' ' -f1; }
sed -e "s/@producer@/$(sha "$dir/redis-producer.password")/" \
    -e "s/@worker@/$(sha "$dir/redis-worker.password")/" \
    -e "s/@flower@/$(sha "$dir/redis-flower.password")/" \
    -e "s/@keda@/$(sha "$dir/redis-keda.password")/" \
    -e "s/@probe@/$(sha "$dir/redis-probe.password")/" \
    "$here/redis/users.acl.template" > "$dir/users.acl"

tls=$dir/tls
if [ ! -s "$tls/ca.crt" ]; then
  openssl req -x509 -new -nodes -newkey rsa:3072 -sha256 -days 1825 \
    -subj "/CN=deid-workers Redis CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
fi
if [ ! -s "$tls/redis.crt" ]; then
  openssl req -new -nodes -newkey rsa:3072 -sha256 -subj "/CN=redis" \
    -keyout "$tls/redis.key" -out "$tls/redis.csr" 2>/dev/null
  printf 'subjectAltName=DNS:redis,DNS:redis.deid.svc.cluster.local,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
    > "$tls/redis.ext"
  openssl x509 -req -in "$tls/redis.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$tls/redis.ext" -out "$tls/redis.crt" 2>/dev/null
  rm -f "$tls/redis.csr" "$tls/redis.ext" "$tls/ca.srl"
fi
# Redis runs as its own user in the containers: let it read its key, its ACL and the probe's
# password, which allows PING only (mode 0644 on files in this private folder; the folder
# itself stays 0700 on the host). Everything else is the operator's alone (0600): set compose's
# DEID_UID/DEID_GID to `id -u`/`id -g` so the deid containers can read their own files.
chmod 644 "$tls/redis.key" "$tls/redis.crt" "$tls/ca.crt" "$dir/users.acl" \
  "$dir/redis-probe.password"
echo "secrets in $dir"
