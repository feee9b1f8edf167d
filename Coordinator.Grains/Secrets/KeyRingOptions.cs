namespace Coordinator.Grains.Secrets;

/// <summary>
/// How the grid's Data Protection key ring (table <c>data_protection_keys</c>) is encrypted at rest, bound from the
/// <c>DataProtection</c> configuration section. Default: nothing configured, the keys are stored unencrypted and the node
/// says so once at start-up.
/// </summary>
public sealed class KeyRingOptions
{
    public const string Section = "DataProtection";

    /// <summary>
    /// The certificate new keys are encrypted to (RSA, with its private key): a PKCS#12 file (<c>.pfx</c>/<c>.p12</c>), or a
    /// PEM certificate when <see cref="CertificateKeyPath"/> is set. Every silo must have the same certificate. Default: none.
    /// </summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PKCS#12 file's password, if it has one. Default: none.</summary>
    public string? CertificatePassword { get; set; }

    /// <summary>The PEM private key of a PEM <see cref="CertificatePath"/>. Default: none (the certificate is PKCS#12).</summary>
    public string? CertificateKeyPath { get; set; }

    /// <summary>
    /// Certificates that keys were encrypted to before a rotation: accepted for decryption, never used to encrypt.
    /// Keep one here until every key encrypted to it has been re-encrypted (<c>Coordinator.Silo data-protection reencrypt</c>) or is
    /// no longer needed. Default: none.
    /// </summary>
    public List<KeyRingCertificate> PreviousCertificates { get; set; } = [];

    /// <summary>Whether the key ring is encrypted at rest on this node.</summary>
    public bool Encrypted => !string.IsNullOrWhiteSpace(CertificatePath);
}

/// <summary>One previous key ring certificate: a PKCS#12 file, or a PEM certificate and its key.</summary>
public sealed class KeyRingCertificate
{
    /// <summary>A PKCS#12 file, or a PEM certificate when <see cref="KeyPath"/> is set.</summary>
    public string? Path { get; set; }

    /// <summary>The PKCS#12 file's password, if any.</summary>
    public string? Password { get; set; }

    /// <summary>The PEM private key of a PEM <see cref="Path"/>.</summary>
    public string? KeyPath { get; set; }
}
