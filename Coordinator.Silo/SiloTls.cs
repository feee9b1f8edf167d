using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Options;
using Orleans.Connections.Security;

namespace Coordinator.Silo;

/// <summary>
/// Mutual TLS between silos (Orleans' silo and gateway ports), bound from the <c>Cluster:Tls</c> configuration section.
/// Off unless <see cref="CertificatePath"/> is set. A peer is accepted when its certificate is this silo's own, one of
/// <see cref="AllowedThumbprints"/>, or issued by <see cref="CaCertificatePath"/>'s authority.
/// </summary>
public sealed class SiloTlsOptions
{
    public const string Section = "Cluster:Tls";

    /// <summary>
    /// This silo's certificate, with its private key: a PKCS#12 file, or a PEM certificate when <see cref="CertificateKeyPath"/>
    /// is set. If it has an Extended Key Usage, it must allow both server and client authentication (each silo is both).
    /// Default: none, and silo traffic is plain TCP.
    /// </summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PKCS#12 file's password, if any. Default: none.</summary>
    public string? CertificatePassword { get; set; }

    /// <summary>The PEM private key of a PEM <see cref="CertificatePath"/>. Default: none.</summary>
    public string? CertificateKeyPath { get; set; }

    /// <summary>
    /// Thumbprints (SHA-1, hex) of peer certificates accepted besides this silo's own: the next certificate during a
    /// rotation, or each silo's own certificate when they differ. Default: none.
    /// </summary>
    public List<string> AllowedThumbprints { get; set; } = [];

    /// <summary>
    /// A certificate authority (PEM or DER file): any peer certificate that chains to it is accepted, so silos can each
    /// have their own certificate and rotate without listing thumbprints. Default: none.
    /// </summary>
    public string? CaCertificatePath { get; set; }

    public bool Enabled => !string.IsNullOrWhiteSpace(CertificatePath);
}

/// <summary>Loads <see cref="SiloTlsOptions"/> and decides which peer certificates a silo accepts.</summary>
public static class SiloTls
{
    /// <summary>Turns mutual TLS on for every silo-to-silo connection, in and out, when <c>Cluster:Tls:CertificatePath</c> is set.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "the certificates serve every connection for the life of the process")]
    public static ISiloBuilder UseCoordinatorTls(this ISiloBuilder silo, SiloTlsOptions options)
    {
        if (!options.Enabled) return silo;
        var certificate = Load(options);
        var authority = string.IsNullOrWhiteSpace(options.CaCertificatePath) ? null : LoadAuthority(options.CaCertificatePath);
        var accepted = options.AllowedThumbprints.Select(t => t.Replace(":", "", StringComparison.Ordinal).Replace(" ", "", StringComparison.Ordinal))
            .Append(certificate.Thumbprint).ToHashSet(StringComparer.OrdinalIgnoreCase);
        return silo.UseTls(certificate, tls =>
        {
            // Each silo is a TLS server to the silos that connect to it and a client of those it connects to: both ends
            // present a certificate, and both check the other's.
            tls.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
            tls.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
            tls.RemoteCertificateValidation = (peer, _, _) => IsAccepted(peer, accepted, authority);
        });
    }

    /// <summary>
    /// A peer is one of ours if its certificate is listed, or chains to the configured authority. Silos dial each other by
    /// IP address, so host names are not checked: the certificate itself is the identity.
    /// </summary>
    public static bool IsAccepted(X509Certificate2 peer, IReadOnlySet<string> acceptedThumbprints, X509Certificate2? authority)
    {
        if (acceptedThumbprints.Contains(peer.Thumbprint)) return true;
        if (authority is null) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(peer) && chain.ChainElements[^1].Certificate.Thumbprint == authority.Thumbprint;
    }

    private static X509Certificate2 Load(SiloTlsOptions options)
    {
        var setting = $"{SiloTlsOptions.Section}:{nameof(SiloTlsOptions.CertificatePath)}";
        var path = options.CertificatePath!;
        if (!File.Exists(path)) throw Invalid($"{setting} '{path}' does not exist (or this process may not read it).");
        try
        {
            var certificate = string.IsNullOrWhiteSpace(options.CertificateKeyPath)
                ? X509CertificateLoader.LoadPkcs12FromFile(path, options.CertificatePassword, X509KeyStorageFlags.EphemeralKeySet)
                : X509Certificate2.CreateFromPemFile(path, options.CertificateKeyPath);
            if (!certificate.HasPrivateKey)
            {
                certificate.Dispose();
                throw Invalid($"{setting} '{path}' has no private key: a silo proves its identity with it.");
            }
            return certificate;
        }
        catch (CryptographicException exception)
        {
            throw Invalid($"{setting} '{path}' could not be read ({exception.Message}). A PKCS#12 file needs {SiloTlsOptions.Section}:{nameof(SiloTlsOptions.CertificatePassword)}; " +
                $"a PEM certificate needs {SiloTlsOptions.Section}:{nameof(SiloTlsOptions.CertificateKeyPath)}.");
        }
        catch (IOException exception)
        {
            throw Invalid($"{setting} '{path}' could not be read ({exception.Message}).");
        }
    }

    private static X509Certificate2 LoadAuthority(string path)
    {
        var setting = $"{SiloTlsOptions.Section}:{nameof(SiloTlsOptions.CaCertificatePath)}";
        if (!File.Exists(path)) throw Invalid($"{setting} '{path}' does not exist (or this process may not read it).");
        try
        {
            return X509CertificateLoader.LoadCertificateFromFile(path);
        }
        catch (CryptographicException exception)
        {
            throw Invalid($"{setting} '{path}' is not a certificate ({exception.Message}).");
        }
    }

    private static OptionsValidationException Invalid(string message) => new(SiloTlsOptions.Section, typeof(SiloTlsOptions), [message]);
}
