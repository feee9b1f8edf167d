using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Coordinator.Tests.Cluster;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Secrets;

/// <summary>Mutual TLS between silos (issue #19, part 7), with real silo processes on real sockets.</summary>
public sealed class SiloTlsTests
{
    [Fact]
    public async Task SilosWithTls_FormOneCluster_OverTls_AndAJobSubmittedOnOneGoesToAWorkerPollingTheOther()
    {
        using var certificate = TestCertificate.Create("coordinator silo");
        var database = await TestDatabase.CreateAsync();
        var siloPort = GridHost.FreeTcpPort();
        await using var a = await SiloProcess.StartAsync(database, Tls(certificate, siloPort));
        await using var b = await SiloProcess.StartAsync(database, Tls(certificate, GridHost.FreeTcpPort()));
        await Eventually.TrueAsync(async () => await ActiveSilosAsync(database) == 2, "both TLS silos are active members", 30_000);

        // The silo port speaks TLS and shows the configured certificate...
        Assert.Equal(certificate.Thumbprint, await ServerCertificateAsync(siloPort, certificate));
        // ...and refuses a peer that brings no certificate of its own (mutual TLS).
        var refused = await Record.ExceptionAsync(() => ServerCertificateAsync(siloPort, clientCertificate: null));
        Assert.True(refused is System.Security.Authentication.AuthenticationException or IOException, $"expected the handshake refused, got {refused}");

        using var httpA = new HttpClient { BaseAddress = a.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        using var httpB = new HttpClient { BaseAddress = b.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var (_, key) = await new ApiClient(httpA, null).SignUpAsync("tls");
        var model = ApiClient.Unique();
        var jobId = await new ApiClient(httpA, key).SubmitAsync(new { model, model_match = "exact", prompt = "over tls" });
        var (worker, _) = await new ApiClient(httpB, key).NewWorkerAsync("tls-worker", model);
        var assignment = await worker.PollAsync($"models[]={model}");
        Assert.Equal(jobId, assignment!.Value.GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task ASiloWithAnUntrustedCertificate_DoesNotJoinTheTlsCluster()
    {
        using var certificate = TestCertificate.Create("coordinator silo");
        using var stranger = TestCertificate.Create("not one of ours");
        var database = await TestDatabase.CreateAsync();
        await using var member = await SiloProcess.StartAsync(database, Tls(certificate, GridHost.FreeTcpPort()));
        await Eventually.TrueAsync(async () => await ActiveSilosAsync(database) == 1, "the first silo is active", 30_000);

        await using var intruder = await SiloProcess.StartAsync(database, Tls(stranger, GridHost.FreeTcpPort()), waitUntilHealthy: false);
        // The joining silo must reach every active silo before it becomes active; its TLS connections are refused.
        await Eventually.TrueAsync(() => intruder.Log.Contains("Failed to get ping responses from", StringComparison.Ordinal),
            "the intruder reports that it cannot reach the cluster", 60_000);
        Assert.Equal(1, await ActiveSilosAsync(database));
        Assert.False(member.HasExited);
    }

    private static Dictionary<string, string> Tls(TestCertificate certificate, int siloPort) => new()
    {
        ["Cluster__SiloPort"] = siloPort.ToString(CultureInfo.InvariantCulture),
        ["Cluster__Tls__CertificatePath"] = certificate.PfxPath,
        ["Cluster__Tls__CertificatePassword"] = certificate.Password,
    };

    private static async Task<long> ActiveSilosAsync(string database)
    {
        await using var connection = new Npgsql.NpgsqlConnection(database);
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM orleans_membership WHERE status = 3");
    }

    /// <summary>A TLS handshake with a silo port, as another silo would (optionally with a client certificate); answers the silo's certificate thumbprint.</summary>
    private static async Task<string> ServerCertificateAsync(int port, TestCertificate? clientCertificate)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
        await using var tls = new SslStream(client.GetStream(), leaveInnerStreamOpen: false,
            // The test only reads which certificate the silo shows (self-signed, for an IP address): any is read, none is trusted.
            (_, certificate, _, _) => certificate is not null);
        using var own = clientCertificate is null ? null : X509CertificateLoader.LoadPkcs12FromFile(clientCertificate.PfxPath, clientCertificate.Password);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "silo",
            ClientCertificates = own is null ? null : [own],
        }, timeout.Token);
        // A server that requires a client certificate refuses the handshake late (TLS 1.3): read until it speaks or hangs up.
        if (own is null)
        {
            var buffer = new byte[1];
            if (await tls.ReadAsync(buffer, timeout.Token) == 0) throw new IOException("the silo closed the connection");
        }
        return tls.RemoteCertificate is { } remote ? X509CertificateLoader.LoadCertificate(remote.GetRawCertData()).Thumbprint : "";
    }
}
