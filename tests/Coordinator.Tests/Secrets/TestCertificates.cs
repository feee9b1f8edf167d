using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Coordinator.Tests.Secrets;

/// <summary>A self-signed RSA certificate written to a temporary folder, as an operator would hand one to every silo.</summary>
public sealed class TestCertificate : IDisposable
{
    private readonly string _folder;

    private TestCertificate(string folder, string pfxPath, string password, string certificatePemPath, string keyPemPath, string thumbprint)
    {
        _folder = folder;
        PfxPath = pfxPath;
        Password = password;
        CertificatePemPath = certificatePemPath;
        KeyPemPath = keyPemPath;
        Thumbprint = thumbprint;
    }

    public string PfxPath { get; }

    public string Password { get; }

    public string CertificatePemPath { get; }

    public string KeyPemPath { get; }

    public string Thumbprint { get; }

    /// <summary>The settings that make a node encrypt its key ring to this certificate (the PKCS#12 file).</summary>
    public Dictionary<string, string?> KeyRingSettings() => new()
    {
        ["DataProtection:CertificatePath"] = PfxPath,
        ["DataProtection:CertificatePassword"] = Password,
    };

    public static TestCertificate Create(string subject, X509KeyUsageFlags usage = X509KeyUsageFlags.KeyEncipherment | X509KeyUsageFlags.DataEncipherment)
    {
        var folder = Directory.CreateTempSubdirectory("coordinator-cert-").FullName;
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest($"CN={subject}", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(usage | X509KeyUsageFlags.DigitalSignature, critical: false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        var password = Convert.ToHexString(RandomNumberGenerator.GetBytes(8));
        var pfx = Path.Combine(folder, "keyring.pfx");
        File.WriteAllBytes(pfx, certificate.Export(X509ContentType.Pfx, password));
        var certificatePem = Path.Combine(folder, "keyring.crt");
        File.WriteAllText(certificatePem, certificate.ExportCertificatePem());
        var keyPem = Path.Combine(folder, "keyring.key");
        File.WriteAllText(keyPem, rsa.ExportPkcs8PrivateKeyPem());
        return new TestCertificate(folder, pfx, password, certificatePem, keyPem, certificate.Thumbprint);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
