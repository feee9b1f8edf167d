using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Coordinator.Grains.Receipts;
using NSec.Cryptography;

namespace Coordinator.Bench;

/// <summary>
/// Receipt verification on one core (issue #17: at least 10,000 receipts/s): parse, canonical JSON without the signature,
/// Ed25519 verify, one thread pinned to one CPU. Both ways a verifier can hold keys are measured: raw public keys looked up
/// by key_id (<c>ReceiptSignatures.Verify(json, Func&lt;string, byte[]?&gt;)</c>, the ledger's chain check) and keys
/// imported once (what <c>ReceiptVerifier</c> caches).
/// </summary>
public sealed class ReceiptBenchmarks(BenchOptions options, Report report)
{
    private const double Target = 10_000;

    public void Run()
    {
        var count = options.Quick ? 5_000 : 20_000;
        var runs = Math.Max(options.Repeat, 5);
        using var key = Key.Create(SignatureAlgorithm.Ed25519);
        var publicKey = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        var keyId = ReceiptSignatures.KeyIdOf(publicKey);
        var receipts = Enumerable.Range(0, count).Select(i => ReceiptSignatures.Sign(Receipt(i), key).Json).ToArray();
        var imported = PublicKey.Import(SignatureAlgorithm.Ed25519, publicKey, KeyBlobFormat.RawPublicKey);
        Func<string, byte[]?> raw = id => id == keyId ? publicKey : null;
        Func<string, PublicKey?> cached = id => id == keyId ? imported : null;

        var process = Process.GetCurrentProcess();
        var affinity = OperatingSystem.IsLinux() ? process.ProcessorAffinity : 0;
        if (OperatingSystem.IsLinux()) process.ProcessorAffinity = 1;
        try
        {
            // Warm up the JIT and libsodium.
            foreach (var receipt in receipts.Take(500)) Check(ReceiptSignatures.Verify(receipt, raw));
            var rawRates = Enumerable.Range(0, runs).Select(_ => Rate(receipts, json => ReceiptSignatures.Verify(json, raw))).ToList();
            var cachedRates = Enumerable.Range(0, runs).Select(_ => Rate(receipts, json => ReceiptSignatures.Verify(json, cached))).ToList();
            var canonicalRates = Enumerable.Range(0, runs).Select(_ => Rate(receipts, json =>
            {
                using var document = System.Text.Json.JsonDocument.Parse(json);
                return CanonicalJson.SignedBytesOfReceipt(document.RootElement).Length > 0 ? null : "empty";
            })).ToList();

            var rawMedian = LatencySummary.Median(rawRates);
            var cachedMedian = LatencySummary.Median(cachedRates);
            report.Table("Receipt verification (one core)", ["way", "receipts/s (median)", "µs per receipt", "runs (receipts/s)", "≥ 10,000/s"],
            [
                Row("key_id → raw public key (ledger chain check)", rawMedian, rawRates, Report.Verdict(rawMedian >= Target)),
                Row("key_id → imported key (ReceiptVerifier)", cachedMedian, cachedRates, Report.Verdict(cachedMedian >= Target)),
                Row("parse + canonical JSON only (no signature check)", LatencySummary.Median(canonicalRates), canonicalRates, "-"),
            ],
            $"{count} distinct receipts of {receipts.Average(r => r.Length):F0} characters on average, each verified once per run; {runs} runs; one thread with the process pinned to CPU 0.");
            report.Set("receipts_verify", new { receipts = count, runs, raw_key_per_second = rawMedian, cached_key_per_second = cachedMedian, target_per_second = Target });
        }
        finally
        {
            if (OperatingSystem.IsLinux()) process.ProcessorAffinity = affinity;
        }
    }

    private static string[] Row(string way, double median, List<double> rates, string verdict) =>
    [
        way, Report.Num(median), (1e6 / median).ToString("F1", CultureInfo.InvariantCulture),
        string.Join(", ", rates.Select(r => Report.Num(r))), verdict,
    ];

    private static double Rate(string[] receipts, Func<string, string?> verify)
    {
        var clock = Stopwatch.StartNew();
        foreach (var receipt in receipts) Check(verify(receipt));
        return receipts.Length / clock.Elapsed.TotalSeconds;
    }

    private static void Check(string? verdict)
    {
        if (verdict is not null) throw new InvalidOperationException($"a valid receipt did not verify: {verdict}");
    }

    private static JsonObject Receipt(int i) => new()
    {
        ["receipt_id"] = "rcpt_" + i.ToString("D26", CultureInfo.InvariantCulture),
        ["job_id"] = (1_000_000 + i).ToString(CultureInfo.InvariantCulture),
        ["provider"] = i % 3 == 0 ? "miner-" + i % 97 : "worker-" + i % 89,
        ["client"] = "account-" + i % 1_000,
        ["units"] = Math.Round(i % 5_000 / 7m, 3),
        ["unit_type"] = "gpu_seconds",
        ["price"] = Math.Round(Math.Round(i % 5_000 / 7m, 3) * 0.02m, 6),
        ["model"] = i % 10 == 0 ? "modèle-中文:8b" : "llama3.2:3b",
        ["started_at"] = 1_760_000_000L + i,
        ["completed_at"] = 1_760_000_000L + i + i % 60,
    };
}
