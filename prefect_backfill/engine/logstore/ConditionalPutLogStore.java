package io.prefectbackfill.delta;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.UUID;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FSDataOutputStreamBuilder;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * A Delta log store for S3 (through Hadoop's S3A) that is safe with several Spark drivers writing the
 * same table: a commit file is created with an S3 conditional PUT ({@code If-None-Match: *}), so of two
 * drivers committing version N only one succeeds; the other gets {@link
 * java.nio.file.FileAlreadyExistsException}, which Delta's optimistic transaction takes as "version N is
 * taken": it checks for conflicts and retries at N+1. Delta's default S3 store (S3SingleDriverLogStore)
 * checks for the file and then PUTs unconditionally, so the second writer silently replaces the first
 * one's commit.
 *
 * <p>Needs Hadoop S3A 3.5+ (the {@code fs.option.create.conditional.overwrite} create option) and a store
 * that honours {@code If-None-Match} (AWS S3 since 2024, MinIO, versitygw, R2). Without the capability,
 * writes fail instead of falling back to an unconditional PUT.
 *
 * <p>Each conditional PUT carries a fresh id as user metadata: a PUT the SDK retried after its first
 * attempt landed is refused (412) by its own object, and the id tells that apart from another writer's.
 *
 * <p>Set with {@code spark.delta.logStore.s3a.impl=io.prefectbackfill.delta.ConditionalPutLogStore}.
 */
public class ConditionalPutLogStore extends HadoopFileSystemLogStore {

    /** The Hadoop createFile option (and path capability) for "create only if absent". */
    static final String CONDITIONAL_CREATE = "fs.option.create.conditional.overwrite";
    /** User metadata key of the writer's id (S3: {@code x-amz-meta-backfill-writer-id}). */
    static final String WRITER_KEY = "backfill-writer-id";
    /** S3A createFile option that sets it: {@code fs.s3a.create.header.<key>} becomes object metadata. */
    static final String WRITER_HEADER_OPTION = "fs.s3a.create.header." + WRITER_KEY;
    /** The same metadata read back: S3A shows object headers as extended attributes {@code header.<key>}. */
    static final String WRITER_XATTR = "header." + WRITER_KEY;

    public ConditionalPutLogStore(Configuration initHadoopConf) {
        super(initHadoopConf);
    }

    @Override
    public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration hadoopConf)
            throws IOException {
        FileSystem fs = path.getFileSystem(hadoopConf);
        if (overwrite) {
            FSDataOutputStream out = fs.create(path, true);
            writeActions(out, actions);
            out.close();
            return;
        }
        if (!fs.hasPathCapability(path, CONDITIONAL_CREATE)) {
            throw new IOException("ConditionalPutLogStore: the filesystem of " + path + " does not support "
                    + CONDITIONAL_CREATE + " (needs Hadoop S3A 3.5+ with fs.s3a.create.conditional.enabled=true);"
                    + " refusing an unconditional write of a Delta commit");
        }
        String writerId = UUID.randomUUID().toString();
        FSDataOutputStream out;
        try {
            FSDataOutputStreamBuilder<?, ?> builder = fs.createFile(path);
            builder.overwrite(false); // the builder's methods return it, typed by its (here unknown) subclass
            builder.must(CONDITIONAL_CREATE, true);
            builder.must(WRITER_HEADER_OPTION, writerId);
            out = (FSDataOutputStream) builder.build();
        } catch (org.apache.hadoop.fs.FileAlreadyExistsException e) {
            throw taken(path, e); // S3A's probe saw the file before any byte was sent
        }
        writeActions(out, actions);
        try {
            out.close(); // the PUT, with If-None-Match: *
        } catch (IOException e) {
            settle(fs, path, writerId, e);
        }
    }

    /**
     * Writes every action, one JSON line each, without closing (on S3 the close is the PUT). A failure while
     * producing or writing the actions aborts the stream, so no prefix of the commit is ever published.
     */
    private static void writeActions(FSDataOutputStream out, Iterator<String> actions) throws IOException {
        try {
            while (actions.hasNext()) {
                out.write((actions.next() + "\n").getBytes(StandardCharsets.UTF_8));
            }
        } catch (Throwable failure) {
            try {
                out.abort();
            } catch (RuntimeException notAbortable) { // never close it: closing would publish the prefix
                failure.addSuppressed(notAbortable);
            }
            throw failure;
        }
    }

    /**
     * The conditional PUT of {@code path} failed (412 Precondition Failed, or anything else after which it is
     * unknown whether the object landed): look at the object there. Ours (a retried PUT whose first attempt
     * succeeded): the commit is done. Another writer's: this version is taken. Absent or unreadable: unknown.
     */
    private static void settle(FileSystem fs, Path path, String writerId, IOException failure) throws IOException {
        String found;
        try {
            found = writerOf(fs, path);
        } catch (IOException probe) {
            failure.addSuppressed(probe);
            throw unknown(path, failure, "and it could not be read back");
        }
        if (writerId.equals(found)) {
            return;
        }
        if (found != null) {
            // Our PUT was conditional: it cannot have replaced this object, and a late attempt of it is refused.
            throw taken(path, failure);
        }
        throw unknown(path, failure, "and no object is there now (a PUT of it may still be in flight)");
    }

    /** The writer id on the object at {@code path}: null if there is no object, "" if it carries none. */
    private static String writerOf(FileSystem fs, Path path) throws IOException {
        byte[] value;
        try {
            value = fs.getXAttr(path, WRITER_XATTR);
        } catch (FileNotFoundException absent) {
            return null;
        }
        return value == null ? "" : new String(value, StandardCharsets.UTF_8);
    }

    private static java.nio.file.FileAlreadyExistsException taken(Path path, Exception cause) {
        java.nio.file.FileAlreadyExistsException e = new java.nio.file.FileAlreadyExistsException(path.toString());
        e.initCause(cause);
        return e;
    }

    private static IOException unknown(Path path, IOException cause, String detail) {
        String what = isPreconditionFailure(cause) ? "was refused (412)" : "failed";
        return new IOException("ConditionalPutLogStore: the conditional PUT of " + path + " " + what + " " + detail
                + ": unknown whether this commit was written", cause);
    }

    /** S3A's RemoteFileChangedException (HTTP 412), matched by name: hadoop-aws need not be on the compile path. */
    private static boolean isPreconditionFailure(Throwable failure) {
        for (Throwable t = failure; t != null; t = t.getCause()) {
            String message = String.valueOf(t.getMessage());
            if (t.getClass().getName().equals("org.apache.hadoop.fs.s3a.RemoteFileChangedException")
                    || message.contains("412") || message.contains("PreconditionFailed")) {
                return true;
            }
        }
        return false;
    }

    /**
     * False: an S3 object becomes visible only when its PUT (or multipart completion) succeeds, whole, and a
     * failed write is aborted, never closed. Delta then writes checkpoints straight to their final name.
     */
    @Override
    public Boolean isPartialWriteVisible(Path path, Configuration hadoopConf) {
        return false;
    }
}
