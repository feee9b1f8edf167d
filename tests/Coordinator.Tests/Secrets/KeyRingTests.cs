using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Coordinator.Grains.Lightning.Macaroons;
using Coordinator.Grains.Receipts;
using Coordinator.Grains.Secrets;
using Coordinator.Grains.Webhooks;
using Coordinator.Silo.Operator;
using Coordinator.Tests.Cluster;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Lightning.Payments;
using Coordinator.Tests.Webhooks;
using Dapper;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Coordinator.Tests.Secrets;

/// <summary>
/// The shared Data Protection key ring (issue #19, part 6): in PostgreSQL, encrypted at rest to a configured certificate,
/// read by every silo, and a node that cannot read it stops with a message instead of writing keys the others cannot read.
/// </summary>
public sealed partial class KeyRingTests
{
    // Every Data Protection payload starts with the magic header 09 F0 C9 F0: "CfDJ8" in base64 and base64url.
    private const string ProtectedPayload = "CfDJ8";

    [Fact]
    public async Task WithACertificate_TheRingHoldsOnlyEncryptedKeys_AndWhatItProtectsStillWorks()
    {
        using var certificate = TestCertificate.Create("coordinator key ring");
        await using var receiver = await WebhookReceiver.StartAsync();
        var settings = certificate.KeyRingSettings();
        settings["Webhooks:AllowPrivateNetworks"] = "true";
        settings["Webhooks:RunSender"] = "false";
        await using var host = await GridHost.StartAsync(settings: settings);

        // A job with a webhook: the submitting key's copy is protected; the delivery is signed with that key.
        var client = await host.NewAccountAsync();
        var (worker, jobId, _) = await client.SubmitAndClaimAsync(new { webhook_url = receiver.Url.ToString() }, start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{jobId}/result", new { output = "done", output_tokens = 3, duration_ms = 9 }), HttpStatusCode.OK);
        Assert.Equal(1, (await host.Get<WebhookSender>().RunOnceAsync()).Delivered);
        var received = Assert.Single(receiver.Requests);
        Assert.Equal("sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(client.Key), Encoding.UTF8.GetBytes(received.Body))), received.Signature);

        // The completed job's receipt is signed, and verifies; the macaroon root key is made.
        var rootKey = await host.Get<MacaroonRootKeys>().ActiveAsync();
        await using var connection = await host.OpenConnectionAsync();
        var receipt = await connection.QuerySingleAsync<string>("SELECT body FROM receipts WHERE job_id = @jobId", new { jobId });
        Assert.Null(await host.Get<ReceiptVerifier>().VerifyAsync(receipt));

        // At rest: every key of the ring is an encryptedSecret to the certificate, with no masterKey in the clear...
        var ring = (await connection.QueryAsync<string>("SELECT xml FROM data_protection_keys")).ToList();
        Assert.NotEmpty(ring);
        Assert.All(ring, xml =>
        {
            Assert.Contains("encryptedSecret", xml, StringComparison.Ordinal);
            Assert.DoesNotContain("masterKey", xml, StringComparison.Ordinal);
        });
        var status = await host.Get<KeyRingCheck>().ReadAsync();
        Assert.All(status.Keys, k => Assert.Contains(certificate.Thumbprint, k.EncryptedTo, StringComparison.Ordinal));
        // ...and the secrets it protects are protected payloads, none holding its secret in a clear form.
        var keyCopy = await connection.QuerySingleAsync<string>(
            "SELECT k.key_protected FROM jobs j JOIN api_keys k ON k.id = j.submitted_by_key_id WHERE j.id = @jobId", new { jobId });
        Assert.StartsWith(ProtectedPayload, keyCopy, StringComparison.Ordinal);
        Assert.DoesNotContain(client.Key, keyCopy, StringComparison.Ordinal);
        var receiptKey = await connection.QuerySingleAsync<string>("SELECT private_key FROM receipt_signing_keys WHERE retired_at IS NULL");
        Assert.StartsWith(ProtectedPayload, receiptKey, StringComparison.Ordinal);
        var storedRoot = await connection.QuerySingleAsync<string>("SELECT root_key FROM lightning_macaroon_keys WHERE key_id = @KeyId", new { rootKey.KeyId });
        Assert.StartsWith(ProtectedPayload, storedRoot, StringComparison.Ordinal);
        Assert.True(Convert.FromBase64String(storedRoot).AsSpan().IndexOf(rootKey.Key) < 0);
    }

    [Fact]
    public async Task ADashboardSession_SignedInOnNodeA_IsSignedInOnNodeB_WithTheRingEncrypted()
    {
        using var certificate = TestCertificate.Create("coordinator key ring");
        var database = await TestDatabase.CreateAsync();
        await using var a = await GridHost.StartAsync(database, settings: certificate.KeyRingSettings());
        await using var b = await GridHost.StartAsync(database, settings: certificate.KeyRingSettings());
        var (_, key) = await a.Anonymous().SignUpAsync("roaming");

        var session = await SignInAsync(a, key);
        using var http = NoCookiesClient();
        using var request = WithCookie(HttpMethod.Get, Root(b, "/"), session);
        var signedIn = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, signedIn.StatusCode);
        Assert.Contains("Overview", await signedIn.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        // Without the cookie node B sends the visitor to sign in: the page above was B reading A's cookie.
        var anonymous = await http.GetAsync(Root(b, "/"));
        Assert.Equal(HttpStatusCode.Redirect, anonymous.StatusCode);
        Assert.Contains("/signin", anonymous.Headers.Location!.ToString(), StringComparison.Ordinal);
        // And the ring those cookies come from is encrypted.
        Assert.All((await b.Get<KeyRingCheck>().ReadAsync()).Keys, k => Assert.Contains(certificate.Thumbprint, k.EncryptedTo, StringComparison.Ordinal));
    }

    [Fact]
    public async Task ANodeWithAnotherCertificate_OrNone_DoesNotStart_AndSaysWhichCertificateTheRingNeeds()
    {
        using var certificate = TestCertificate.Create("the grid's key ring");
        using var stranger = TestCertificate.Create("another grid's key ring");
        var database = await TestDatabase.CreateAsync();
        await using (var first = await GridHost.StartAsync(database, settings: certificate.KeyRingSettings()))
        {
            first.Get<IDataProtectionProvider>().CreateProtector("test").Protect("made on the first node");
        }
        var keysBefore = await CountKeysAsync(database);
        Assert.True(keysBefore > 0);

        foreach (var settings in new[]
                 {
                     new Dictionary<string, string>
                     {
                         ["DataProtection__CertificatePath"] = stranger.PfxPath,
                         ["DataProtection__CertificatePassword"] = stranger.Password,
                     },
                     new Dictionary<string, string>(),
                 })
        {
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => SiloProcess.StartAsync(database, settings));
            Assert.Contains("holds 1 key(s) this node cannot decrypt", refused.Message, StringComparison.Ordinal);
            Assert.Contains($"thumbprint {certificate.Thumbprint}", refused.Message, StringComparison.Ordinal);
            Assert.Contains("DataProtection:PreviousCertificates", refused.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", refused.Message, StringComparison.Ordinal); // a message, not a stack trace
        }
        // Neither wrote a key of its own into the shared ring.
        Assert.Equal(keysBefore, await CountKeysAsync(database));

        // The same certificate as PEM files is the same certificate: that node starts.
        await using var pem = await SiloProcess.StartAsync(database, new Dictionary<string, string>
        {
            ["DataProtection__CertificatePath"] = certificate.CertificatePemPath,
            ["DataProtection__CertificateKeyPath"] = certificate.KeyPemPath,
        });
        Assert.False(pem.HasExited);
    }

    [Fact]
    public async Task AWrongPassword_StopsTheNode_NamingTheSetting()
    {
        using var certificate = TestCertificate.Create("coordinator key ring");
        var database = await TestDatabase.CreateAsync();
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => SiloProcess.StartAsync(database, new Dictionary<string, string>
        {
            ["DataProtection__CertificatePath"] = certificate.PfxPath,
            ["DataProtection__CertificatePassword"] = "not the password",
        }));
        Assert.Contains($"DataProtection:CertificatePath '{certificate.PfxPath}' could not be read", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutACertificate_OneWarningOfOurOwnSaysWhatToSet_AndTheFrameworksBareWarningIsGone()
    {
        using var logs = new CollectingLoggerProvider();
        var database = await TestDatabase.CreateAsync();
        await using (var host = await GridHost.StartAsync(database, services: s => s.AddSingleton<ILoggerProvider>(logs)))
        {
            // The test host runs as Development (./run.sh's environment): the note is Information there.
            Assert.Single(logs.Lines, l => l.StartsWith("Information Coordinator.Grains.Secrets.KeyRingCheck", StringComparison.Ordinal)
                && l.Contains("stored unencrypted", StringComparison.Ordinal));
            // The database is new: whatever key its ring holds, this node made it, and logged it here.
            host.Get<IDataProtectionProvider>().CreateProtector("test").Protect("needs a key");
            Assert.Equal(1, await CountKeysAsync(database));
            Assert.DoesNotContain(logs.Lines, l => l.Contains("No XML encryptor configured", StringComparison.Ordinal));
        }

        // A production silo warns, naming the setting and the document.
        await using var silo = await SiloProcess.StartAsync(database);
        await Eventually.TrueAsync(() => UnencryptedWarning().IsMatch(silo.Log), "the silo warns that the key ring is unencrypted");
        Assert.Single(UnencryptedWarning().Matches(silo.Log));
        Assert.Contains("DataProtection:CertificatePath", silo.Log, StringComparison.Ordinal);
        Assert.Contains("deploy/README.md", silo.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reencrypt_EncryptsKeysFromBeforeEncryption_ThenMovesThemToANewCertificate_AndWhatTheyProtectedStaysReadable()
    {
        using var first = TestCertificate.Create("key ring 2026");
        using var second = TestCertificate.Create("key ring 2027");
        var database = await TestDatabase.CreateAsync();
        string payload;
        await using (var plain = await GridHost.StartAsync(database))
        {
            payload = plain.Get<IDataProtectionProvider>().CreateProtector("test").Protect("protected before encryption");
        }

        // Encryption turned on: the old key stays readable, stored as it was, until the operator re-encrypts it.
        await using (var encrypted = await GridHost.StartAsync(database, settings: first.KeyRingSettings()))
        {
            Assert.Single((await encrypted.Get<KeyRingCheck>().ReadAsync()).Unencrypted);
            using var output = new StringWriter();
            Assert.Equal(0, await DataProtectionCommands.RunAsync(encrypted.Services, ["reencrypt"], output));
            Assert.Contains("Re-encrypted 1 key(s)", output.ToString(), StringComparison.Ordinal);
            Assert.Empty((await encrypted.Get<KeyRingCheck>().ReadAsync()).Unencrypted);
        }
        Assert.All(await RingAsync(database), xml => Assert.DoesNotContain("masterKey", xml, StringComparison.Ordinal));
        await using (var reader = await GridHost.StartAsync(database, settings: first.KeyRingSettings()))
        {
            Assert.Equal("protected before encryption", reader.Get<IDataProtectionProvider>().CreateProtector("test").Unprotect(payload));
        }

        // Rotation: the new certificate, the old one accepted while the keys move to the new one.
        var rotating = second.KeyRingSettings();
        rotating["DataProtection:PreviousCertificates:0:Path"] = first.PfxPath;
        rotating["DataProtection:PreviousCertificates:0:Password"] = first.Password;
        await using (var rotator = await GridHost.StartAsync(database, settings: rotating))
        {
            using var reencrypted = new StringWriter();
            Assert.Equal(0, await DataProtectionCommands.RunAsync(rotator.Services, ["reencrypt"], reencrypted));
            using var list = new StringWriter();
            Assert.Equal(0, await DataProtectionCommands.RunAsync(rotator.Services, ["list"], list));
            Assert.Contains(second.Thumbprint, list.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain(first.Thumbprint, list.ToString(), StringComparison.Ordinal);
        }
        // The old certificate is no longer needed.
        await using var after = await GridHost.StartAsync(database, settings: second.KeyRingSettings());
        Assert.Equal("protected before encryption", after.Get<IDataProtectionProvider>().CreateProtector("test").Unprotect(payload));
    }

    private static async Task<long> CountKeysAsync(string database)
    {
        await using var connection = new Npgsql.NpgsqlConnection(database);
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM data_protection_keys");
    }

    private static async Task<List<string>> RingAsync(string database)
    {
        await using var connection = new Npgsql.NpgsqlConnection(database);
        return (await connection.QueryAsync<string>("SELECT xml FROM data_protection_keys")).ToList();
    }

    private static Uri Root(GridHost host, string path) => new(new Uri(host.BaseAddress.GetLeftPart(UriPartial.Authority)), path);

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "the client owns its handler")]
    private static HttpClient NoCookiesClient() => new(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false });

    private static HttpRequestMessage WithCookie(HttpMethod method, Uri uri, string cookie)
    {
        var request = new HttpRequestMessage(method, uri);
        request.Headers.Add("Cookie", cookie);
        return request;
    }

    /// <summary>Signs in to the dashboard of <paramref name="host"/> as a browser does (the form, its antiforgery token); answers the session cookie.</summary>
    private static async Task<string> SignInAsync(GridHost host, string key)
    {
        using var http = NoCookiesClient();
        var form = await http.GetAsync(Root(host, "/signin"));
        Assert.Equal(HttpStatusCode.OK, form.StatusCode);
        var antiforgery = Cookie(form, "coordinator_antiforgery");
        var token = AntiforgeryToken().Match(await form.Content.ReadAsStringAsync()).Groups[1].Value;
        Assert.NotEmpty(token);
        using var post = WithCookie(HttpMethod.Post, Root(host, "/signin"), antiforgery);
        post.Content = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["_handler"] = "signin",
            ["ApiKey"] = key,
            ["__RequestVerificationToken"] = WebUtility.HtmlDecode(token),
        });
        var signedIn = await http.SendAsync(post);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        return Cookie(signedIn, "coordinator_session");
    }

    private static string Cookie(HttpResponseMessage response, string name) =>
        response.Headers.GetValues("Set-Cookie").Select(c => c.Split(';')[0]).Single(c => c.StartsWith(name + "=", StringComparison.Ordinal));

    [GeneratedRegex("name=\"__RequestVerificationToken\" value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryToken();

    [GeneratedRegex(@"warn: Coordinator\.Grains\.Secrets\.KeyRingCheck\[1\]\s+The Data Protection key ring in PostgreSQL \(table data_protection_keys\) is stored unencrypted")]
    private static partial Regex UnencryptedWarning();
}
