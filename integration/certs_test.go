package integration

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs names the PEM files written by GenerateCerts.
type Certs struct {
	CAFile   string // CA certificate that signed CertFile
	CertFile string // server certificate for "localhost" and 127.0.0.1
	KeyFile  string // server private key, mode 0600

	// OtherCAFile is an unrelated CA that did not sign CertFile, for tests
	// that expect certificate verification to fail.
	OtherCAFile string
}

// GenerateCerts writes a fresh CA, a server certificate signed by it, and an
// unrelated second CA into dir: ca.pem, server.pem, server.key, other-ca.pem.
// The keys are ECDSA P-256 and the certificates are valid for 24 hours.
//
// The files belong to the current user; a server running as another user
// needs ChownTo on the key (StartPostgres does that for WithSSL).
func GenerateCerts(t testing.TB, dir string) Certs {
	t.Helper()
	c := Certs{
		CAFile:      filepath.Join(dir, "ca.pem"),
		CertFile:    filepath.Join(dir, "server.pem"),
		KeyFile:     filepath.Join(dir, "server.key"),
		OtherCAFile: filepath.Join(dir, "other-ca.pem"),
	}
	ca, caKey := newCA(t, "sqlcache test CA")
	other, _ := newCA(t, "sqlcache unrelated test CA")

	serverKey := newKey(t)
	server := certTemplate("localhost")
	server.DNSNames = []string{"localhost"}
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	server.KeyUsage = x509.KeyUsageDigitalSignature
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverDER := createCert(t, server, ca, serverKey.Public(), caKey)

	writePEM(t, c.CAFile, "CERTIFICATE", ca.Raw, 0o644)
	writePEM(t, c.OtherCAFile, "CERTIFICATE", other.Raw, 0o644)
	writePEM(t, c.CertFile, "CERTIFICATE", serverDER, 0o644)
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		t.Fatalf("marshaling server key: %v", err)
	}
	// Postgres refuses a key file that group or others can read.
	writePEM(t, c.KeyFile, "PRIVATE KEY", keyDER, 0o600)
	return c
}

// newCA returns a self-signed CA certificate and its key.
func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := certTemplate(name)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der := createCert(t, tmpl, tmpl, key.Public(), key)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing CA certificate: %v", err)
	}
	return cert, key
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	return key
}

// certTemplate returns a certificate valid for the next 24 hours, and for the
// hour before now to tolerate clock skew.
func certTemplate(commonName string) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("creating certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return der
}

func writePEM(t testing.TB, path, blockType string, der []byte, mode os.FileMode) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}
