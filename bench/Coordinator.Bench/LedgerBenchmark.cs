using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Coordinator.Grains;
using Coordinator.Grains.Database;
using Coordinator.Grains.Ledger;
using Coordinator.Grains.Receipts;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using NSec.Cryptography;

namespace Coordinator.Bench;

/// <summary>
/// <c>ledger-verify</c> (issue #17): fills a database with a million receipts (a hundred thousand with <c>--quick</c>)
/// sealed into blocks of 500, as the ledger seals them, then times <see cref="LedgerVerifier"/> over the whole chain:
/// every receipt hashed from its body and checked against its row, every Merkle root, block hash and link. Also times
/// reading the same rows without checking anything, which is what PostgreSQL and Npgsql cost on their own.
/// The chain is verified twice a run: without the signatures (hashes, columns, Merkle roots, links) and with every
/// receipt's Ed25519 signature too, as <c>ledger verify</c> does. The receipts are signed with a key of the benchmark's own.
/// </summary>
public sealed class LedgerBenchmark(BenchOptions options, BenchDatabase database, Report report)
{
    private const int BlockSize = 500;
    private const string DatabaseName = "bench_ledger";

    public async Task RunAsync()
    {
        var receipts = options.Quick ? 100_000 : 1_000_000;
        var connectionString = await database.CreateAsync(DatabaseName);
        await using var dataSource = GridServiceCollectionExtensions.BuildDataSource(connectionString);
        await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync();
        var fill = Stopwatch.StartNew();
        var (keyId, publicKey) = await FillAsync(dataSource, receipts);
        Func<string, string?> signatureCheck = body => ReceiptSignatures.Verify(body, id => id == keyId ? publicKey : null);
        // One statement each: VACUUM cannot run in the implicit transaction of a multi-statement command.
        await database.ExecAsync(connectionString, "VACUUM ANALYZE receipts", 1200);
        await database.ExecAsync(connectionString, "VACUUM ANALYZE ledger_blocks", 1200);
        Console.WriteLine($"ledger-verify: {receipts:N0} receipts in {receipts / BlockSize:N0} blocks written in {fill.Elapsed.TotalSeconds:F0} s");

        var store = new LedgerStore(dataSource);
        var readSeconds = new List<double>();
        var hashSeconds = new List<double>();
        var verifySeconds = new List<double>();
        for (var run = 0; run < options.Repeat; run++)
        {
            var clock = Stopwatch.StartNew();
            long rows = 0;
            await foreach (var _ in store.ChainBlocksAsync()) rows++;
            await foreach (var _ in store.ChainReceiptsAsync()) rows++;
            readSeconds.Add(clock.Elapsed.TotalSeconds);
            if (rows != receipts + receipts / BlockSize) throw new InvalidOperationException($"read {rows} rows, expected {receipts + receipts / BlockSize}");

            clock.Restart();
            var hashed = await LedgerVerifier.VerifyAsync(store.ChainBlocksAsync(), store.ChainReceiptsAsync(), null);
            hashSeconds.Add(clock.Elapsed.TotalSeconds);
            clock.Restart();
            var result = await LedgerVerifier.VerifyAsync(store.ChainBlocksAsync(), store.ChainReceiptsAsync(), signatureCheck);
            verifySeconds.Add(clock.Elapsed.TotalSeconds);
            if (!hashed.Valid || !result.Valid || result.Receipts != receipts || !result.SignaturesChecked)
            {
                throw new InvalidOperationException($"the benchmark's chain did not verify: {hashed.Problem ?? result.Problem}");
            }
            Console.WriteLine($"ledger-verify run {run + 1}: read {readSeconds[^1]:F2} s, hashes only {hashSeconds[^1]:F2} s, with signatures {verifySeconds[^1]:F2} s");
        }

        var verify = LatencySummary.Median(verifySeconds);
        var hashOnly = LatencySummary.Median(hashSeconds);
        var read = LatencySummary.Median(readSeconds);
        report.Table("Chain verification (issue #17)", ["what", "receipts", "blocks", "median time", "receipts/s"],
        [
            ["read the chain only (PostgreSQL + Npgsql)", Report.Num(receipts), Report.Num(receipts / BlockSize), $"{read.ToString("F2", CultureInfo.InvariantCulture)} s", Report.Num(receipts / read)],
            ["verify without signatures: hashes, columns, Merkle roots, links", Report.Num(receipts), Report.Num(receipts / BlockSize), $"{hashOnly.ToString("F2", CultureInfo.InvariantCulture)} s", Report.Num(receipts / hashOnly)],
            ["verify everything: the above and every Ed25519 signature (`ledger verify`)", Report.Num(receipts), Report.Num(receipts / BlockSize), $"{verify.ToString("F2", CultureInfo.InvariantCulture)} s", Report.Num(receipts / verify)],
        ],
        $"Median of {options.Repeat} run(s). Receipts of about 410 bytes, blocks of {BlockSize}; the verifier is one async loop on the bench process, PostgreSQL streams the rows from its own process.");
        report.Set("ledger_verify", new { receipts, blocks = receipts / BlockSize, read_seconds = read, verify_seconds = verify, receipts_per_second = receipts / verify, hash_only_seconds = hashOnly, runs = verifySeconds });
        await database.DropAsync(DatabaseName);
    }

    /// <summary>
    /// Writes the receipts with binary COPY, already sealed: receipts signed as the issuer signs them (with a key of the
    /// benchmark's own), blocks of <see cref="BlockSize"/> made with the ledger's own hashing, as the sealer would.
    /// Answers the key's id and public key.
    /// </summary>
    private static async Task<(string KeyId, byte[] PublicKey)> FillAsync(NpgsqlDataSource dataSource, int receipts)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        using var key = Key.Create(SignatureAlgorithm.Ed25519);
        var publicKey = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        var keyId = ReceiptSignatures.KeyIdOf(publicKey);
        await using (var setup = new NpgsqlCommand($"""
            INSERT INTO receipt_signing_keys (key_id, public_key, private_key, created_at) VALUES ('{keyId}', '\x{Convert.ToHexString(publicKey)}', 'not a key: the benchmark signs in memory', now());
            INSERT INTO accounts (name, created_at) VALUES ('ledger-bench', now());
            INSERT INTO workers (account_id, name, last_seen_at, created_at) SELECT id, 'bench', now(), now() FROM accounts WHERE name = 'ledger-bench';
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at, completed_at, worker_id, credits)
            SELECT w.account_id, 'completed', 'llama3.2', 'llama3.2', 'exact', 'p', 0, 60, now(), now(), w.id, 0
            FROM workers w, generate_series(1, 1000);
            """, connection) { CommandTimeout = 600 })
        {
            await setup.ExecuteNonQueryAsync();
        }
        long accountId, workerId, firstJob;
        await using (var ids = new NpgsqlCommand("SELECT (SELECT id FROM accounts WHERE name = 'ledger-bench'), (SELECT id FROM workers), (SELECT min(id) FROM jobs)", connection))
        await using (var reader = await ids.ExecuteReaderAsync())
        {
            await reader.ReadAsync();
            (accountId, workerId, firstJob) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        }

        var client = $"acct-{accountId}";
        var provider = $"miner-{workerId}";
        var start = DateTimeOffset.UtcNow.AddDays(-1);
        var blocks = new List<LedgerBlock>(receipts / BlockSize + 1);
        var seqs = new List<long[]>(receipts / BlockSize + 1);
        var prev = LedgerHashing.GenesisPrevHash.ToArray();
        await using (var copy = await connection.BeginBinaryImportAsync(
            "COPY receipts (seq, receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, hash, issued_at) FROM STDIN (FORMAT BINARY)"))
        {
            var tree = new MerkleTree();
            for (var i = 0; i < receipts; i++)
            {
                var height = i / BlockSize + 1;
                var jobId = firstJob + i % 1000;
                var units = 1 + i % 50;
                var price = units * 0.02m;
                var completed = start.AddMilliseconds(i * 50L).ToUnixTimeSeconds();
                var receiptId = $"rcpt_{i:x32}";
                var body = ReceiptSignatures.Sign(new JsonObject
                {
                    ["receipt_id"] = receiptId, ["job_id"] = jobId.ToString(CultureInfo.InvariantCulture), ["provider"] = provider, ["client"] = client,
                    ["units"] = (double)units, ["unit_type"] = "gpu_seconds", ["price"] = (double)price, ["model"] = "llama3.2",
                    ["started_at"] = completed - units, ["completed_at"] = completed,
                }, key).Json;
                var hash = LedgerHashing.ReceiptHash(body);
                tree.Add(hash);
                await copy.StartRowAsync();
                await copy.WriteAsync(i + 1L, NpgsqlDbType.Bigint);
                await copy.WriteAsync(receiptId, NpgsqlDbType.Text);
                await copy.WriteAsync(jobId, NpgsqlDbType.Bigint);
                await copy.WriteAsync(accountId, NpgsqlDbType.Bigint);
                await copy.WriteAsync(workerId, NpgsqlDbType.Bigint);
                await copy.WriteAsync(client, NpgsqlDbType.Text);
                await copy.WriteAsync(provider, NpgsqlDbType.Text);
                await copy.WriteAsync(price, NpgsqlDbType.Numeric);
                await copy.WriteAsync(keyId, NpgsqlDbType.Text);
                await copy.WriteAsync(body, NpgsqlDbType.Text);
                await copy.WriteAsync(hash, NpgsqlDbType.Bytea);
                await copy.WriteAsync(DateTimeOffset.FromUnixTimeSeconds(completed), NpgsqlDbType.TimestampTz);
                if (tree.Count == BlockSize || i == receipts - 1)
                {
                    var sealedAt = DateTimeOffset.FromUnixTimeSeconds(completed + 1);
                    var root = tree.Root();
                    var blockHash = LedgerHashing.BlockHash(height, sealedAt, prev, root, tree.Count);
                    blocks.Add(new LedgerBlock(height, sealedAt, prev, root, blockHash, tree.Count, i + 1L));
                    seqs.Add(Enumerable.Range(i + 2 - tree.Count, tree.Count).Select(seq => (long)seq).ToArray());
                    prev = blockHash;
                    tree = new MerkleTree();
                }
            }
            await copy.CompleteAsync();
        }
        await using (var copy = await connection.BeginBinaryImportAsync(
            "COPY ledger_blocks (height, sealed_at, prev_hash, merkle_root, hash, receipt_count, total_receipts, seqs) FROM STDIN (FORMAT BINARY)"))
        {
            for (var b = 0; b < blocks.Count; b++)
            {
                var block = blocks[b];
                await copy.WriteRowAsync(default, block.Height, block.SealedAt, block.PrevHash, block.MerkleRoot, block.Hash, block.ReceiptCount, block.TotalReceipts, seqs[b]);
            }
            await copy.CompleteAsync();
        }
        return (keyId, publicKey);
    }
}
