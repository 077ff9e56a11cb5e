/*
 * jpegfx._jpegread: a thin binding to libjpeg(-turbo)'s coefficient API (jpeg_read_coefficients).
 *
 * One call reads a JPEG held in memory: the header once (jpeg_read_header), then the quantised DCT
 * coefficients of every component and the quantisation table each component was decoded with.
 * Everything that can go wrong is reported to the caller of that call, never printed:
 *
 *   - libjpeg's errors (error_exit) and, unless the caller is tolerant, its warnings (emit_message
 *     with level -1: corrupt entropy data, premature end of file, bad progression ...) end the call
 *     through setjmp/longjmp; the decompressor and all its memory are released on every path;
 *   - in tolerant mode the warnings are returned with the result (libjpeg fills what it could not
 *     decode with zeros, as djpeg does);
 *   - limits checked before any entropy decoding: pixels, bytes of coefficient memory (libjpeg's
 *     whole-image arrays plus the returned copy, computed from the header), and a scan limit
 *     enforced by a progress monitor while the scans are read;
 *   - APPn/COM payloads are never saved (jpeg_save_markers is not called), so no marker data is
 *     kept or leaked.
 *
 * Each thread keeps one idle decompressor for its next call (a pthread key; freed when the thread
 * exits): a call takes it, resets it with jpeg_abort_decompress when done, whatever happened, and puts
 * it back. Nothing else is shared, so calls are safe from several threads at once (the GIL is released
 * while libjpeg runs) and in forked children (a decompressor is idle whenever the process can fork).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <jpeglib.h>
#include <jerror.h>

#define MAX_KEPT_WARNINGS 8
#define MSG_LEN (JMSG_LENGTH_MAX + 96)

static PyObject *ReadError;      /* jpegfx._jpegread.ReadError */
static PyObject *LayoutMismatch; /* jpegfx._jpegread.LayoutMismatch: a good file that does not fit the batch */

typedef struct {
    struct jpeg_error_mgr pub; /* must be first: libjpeg sees a struct jpeg_error_mgr * */
    jmp_buf escape;
    int tolerant;
    int max_scans;
    int num_warnings;
    char message[MSG_LEN];                              /* why the call failed */
    char warnings[MAX_KEPT_WARNINGS][JMSG_LENGTH_MAX]; /* tolerant mode: the first few */
} reader_error;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    reader_error err;
    struct jpeg_progress_mgr progress;
} reader;

/* A friendlier line for the errors users meet; everything else keeps libjpeg's own text. */
static void describe_error(j_common_ptr cinfo, char *out) {
    char text[JMSG_LENGTH_MAX];
    int code = cinfo->err->msg_code;
    int parm = cinfo->err->msg_parm.i[0];
    (*cinfo->err->format_message)(cinfo, text);
    switch (code) {
    case JERR_NO_SOI:
        snprintf(out, MSG_LEN, "not a JPEG file (libjpeg: %s)", text);
        break;
    case JERR_INPUT_EMPTY:
    case JERR_INPUT_EOF:
        snprintf(out, MSG_LEN, "truncated JPEG (libjpeg: %s)", text);
        break;
    case JERR_SOF_UNSUPPORTED:
        if (parm == 0xC3 || parm == 0xCB)
            snprintf(out, MSG_LEN, "lossless JPEG (SOF%d) is not supported", parm - 0xC0);
        else if ((parm >= 0xC5 && parm <= 0xC7) || (parm >= 0xCD && parm <= 0xCF))
            snprintf(out, MSG_LEN, "hierarchical JPEG (SOF%d) is not supported", parm - 0xC0);
        else
            snprintf(out, MSG_LEN, "unsupported JPEG process (libjpeg: %s)", text);
        break;
    case JERR_BAD_PRECISION:
        snprintf(out, MSG_LEN, "%d-bit JPEG is not supported (only 8-bit precision)", parm);
        break;
    case JERR_EMPTY_IMAGE:
        snprintf(out, MSG_LEN, "zero-size JPEG or a height defined by a DNL marker (libjpeg: %s)", text);
        break;
    case JERR_OUT_OF_MEMORY:
        snprintf(out, MSG_LEN, "out of memory while reading the JPEG (libjpeg: %s)", text);
        break;
    default:
        snprintf(out, MSG_LEN, "corrupt or unsupported JPEG (libjpeg: %s)", text);
    }
}

static void on_error_exit(j_common_ptr cinfo) {
    reader_error *err = (reader_error *)cinfo->err;
    describe_error(cinfo, err->message);
    longjmp(err->escape, 1);
}

static void on_emit_message(j_common_ptr cinfo, int level) {
    reader_error *err = (reader_error *)cinfo->err;
    if (level >= 0)
        return; /* trace messages */
    if (!err->tolerant) {
        char text[JMSG_LENGTH_MAX];
        (*cinfo->err->format_message)(cinfo, text);
        int code = cinfo->err->msg_code;
        if (code == JWRN_JPEG_EOF)
            snprintf(err->message, MSG_LEN, "truncated JPEG (libjpeg: %s)", text);
        else if (code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM)
            snprintf(err->message, MSG_LEN,
                     "libjpeg warning: %s (refused: read with tolerant=True, or --tolerant, to accept)", text);
        else
            snprintf(err->message, MSG_LEN, "corrupt JPEG data (libjpeg warning: %s)", text);
        longjmp(err->escape, 1);
    }
    if (err->num_warnings < MAX_KEPT_WARNINGS)
        (*cinfo->err->format_message)(cinfo, err->warnings[err->num_warnings]);
    err->num_warnings++;
    cinfo->err->num_warnings++;
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; /* never print */ }

static void on_progress(j_common_ptr cinfo) {
    reader *r = (reader *)cinfo; /* cinfo is the first member of reader */
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > r->err.max_scans) {
        snprintf(r->err.message, MSG_LEN,
                 "JPEG with more than %d scans is refused (scan limit; raise max_scans to read it)",
                 r->err.max_scans);
        longjmp(r->err.escape, 1);
    }
}

/* "gray" or "ycbcr"; NULL with the reason in ``why`` for anything else. */
static const char *color_space_name(int nc, J_COLOR_SPACE cs, char *why) {
    if (nc == 1 && cs == JCS_GRAYSCALE)
        return "gray";
    if (nc == 3 && cs == JCS_YCbCr)
        return "ycbcr";
    if (nc == 3 && cs == JCS_RGB)
        snprintf(why, MSG_LEN, "RGB colour-space JPEG (Adobe transform 0, or component ids 'R','G','B') "
                               "is not supported; only YCbCr");
    else if (nc == 4)
        snprintf(why, MSG_LEN, "CMYK/YCCK JPEG (4 components) is not supported");
    else
        snprintf(why, MSG_LEN, "JPEG with %d components is not supported (only 1 or 3)", nc);
    return NULL;
}

static unsigned long long round_up(unsigned long long a, unsigned long long b) { return (a + b - 1) / b * b; }

/* Our checks of a parsed header, before any entropy decoding (no Python objects, no GIL needed): the
 * colour space name, or NULL with the reason in ``why``. */
static const char *check_header(j_decompress_ptr cinfo, unsigned long long max_pixels, unsigned long long max_bytes,
                                int header_only, char *why) {
    int nc = cinfo->num_components;
    unsigned long long pixels = (unsigned long long)cinfo->image_width * cinfo->image_height;
    if (pixels > max_pixels) {
        snprintf(why, MSG_LEN, "JPEG too large: %ux%u = %llu pixels exceeds max_pixels=%llu",
                 cinfo->image_width, cinfo->image_height, pixels, max_pixels);
        return NULL;
    }
    const char *space = color_space_name(nc, cinfo->jpeg_color_space, why);
    if (space == NULL)
        return NULL;
    int vmax = cinfo->max_v_samp_factor, hmax = cinfo->max_h_samp_factor;
    unsigned long long need = 0;
    for (int c = 0; c < nc; c++) {
        jpeg_component_info *comp = &cinfo->comp_info[c];
        if (vmax % comp->v_samp_factor || hmax % comp->h_samp_factor) {
            snprintf(why, MSG_LEN, "fractional sampling ratio (component %d: %dx%d of %dx%d) is not supported",
                     comp->component_id, comp->h_samp_factor, comp->v_samp_factor, hmax, vmax);
            return NULL;
        }
        unsigned long long blocks = (unsigned long long)comp->height_in_blocks * comp->width_in_blocks;
        /* libjpeg's whole-image array (padded to whole MCUs) plus the returned copy. */
        need += round_up(comp->height_in_blocks, comp->v_samp_factor) *
                round_up(comp->width_in_blocks, comp->h_samp_factor) * sizeof(JBLOCK);
        need += blocks * sizeof(JBLOCK);
    }
    if (!header_only && need > max_bytes) {
        snprintf(why, MSG_LEN, "JPEG needs %llu MB of coefficient memory (%ux%u pixels), above max_bytes=%llu MB",
                 need >> 20, cinfo->image_width, cinfo->image_height, max_bytes >> 20);
        return NULL;
    }
    return space;
}

/* Phase 2 (no GIL): every scan, then each component's logical block grid copied to dest[c] and, with
 * table_dest, the table each component was decoded with. libjpeg's failures longjmp to the caller's
 * setjmp; 0 with ``why`` set when a component has no data. */
static int read_scans(reader *r, char **dest, int32_t **table_dest, char *why) {
    j_decompress_ptr cinfo = &r->cinfo;
    jvirt_barray_ptr *arrays = jpeg_read_coefficients(cinfo);
    for (int c = 0; c < cinfo->num_components; c++) {
        jpeg_component_info *comp = &cinfo->comp_info[c];
        size_t row_bytes = (size_t)comp->width_in_blocks * sizeof(JBLOCK);
        for (JDIMENSION y = 0; y < comp->height_in_blocks; y++) {
            JBLOCKARRAY row = (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, arrays[c], y, 1, FALSE);
            memcpy(dest[c] + (size_t)y * row_bytes, row[0], row_bytes);
        }
    }
    if (table_dest == NULL)
        return 1;
    for (int c = 0; c < cinfo->num_components; c++) {
        JQUANT_TBL *q = cinfo->comp_info[c].quant_table; /* latched when the component's first scan started */
        if (q == NULL) {
            snprintf(why, MSG_LEN, "corrupt JPEG: no scan holds data of component %d", cinfo->comp_info[c].component_id);
            return 0;
        }
        for (int k = 0; k < DCTSIZE2; k++)
            table_dest[c][k] = q->quantval[k];
    }
    return 1;
}

/* The calling thread's idle decompressor, if any. */
static pthread_key_t idle_key;
static int idle_key_ok = 0;

static void destroy_reader(void *p) {
    reader *r = (reader *)p;
    jpeg_destroy_decompress(&r->cinfo);
    free(r);
}

/* A decompressor ready for jpeg_mem_src: the thread's idle one, or a new one (NULL: out of memory). */
static reader *take_reader(void) {
    reader *r = idle_key_ok ? (reader *)pthread_getspecific(idle_key) : NULL;
    if (r != NULL) {
        pthread_setspecific(idle_key, NULL);
    } else {
        r = (reader *)calloc(1, sizeof(reader));
        if (r == NULL)
            return NULL;
        r->cinfo.err = jpeg_std_error(&r->err.pub);
        r->err.pub.error_exit = on_error_exit;
        r->err.pub.emit_message = on_emit_message;
        r->err.pub.output_message = on_output_message;
        r->progress.progress_monitor = on_progress;
        if (setjmp(r->err.escape)) { /* jpeg_create_decompress fails only when out of memory */
            free(r);
            return NULL;
        }
        jpeg_create_decompress(&r->cinfo);
        r->cinfo.progress = &r->progress;
    }
    r->err.num_warnings = 0;
    r->err.message[0] = '\0';
    r->err.pub.num_warnings = 0;
    return r;
}

/* Reset the decompressor (frees everything the image needed) and keep it for the thread's next call. */
static void return_reader(reader *r) {
    jpeg_abort_decompress(&r->cinfo);
    if (idle_key_ok && pthread_getspecific(idle_key) == NULL && pthread_setspecific(idle_key, r) == 0)
        return;
    destroy_reader(r);
}

/* Where a read into a caller's batch goes: slot ``index`` of ``out_planes`` (one C-contiguous, writable
 * int16 array (N, Hb_c, Wb_c, 8, 8) per component) and ``out_tables`` (int32 (N, 64) per component),
 * whose shapes must be the file's. 1 when they fit; 0 for unusable arrays and -1 for a file of another
 * layout, with the reason in ``why``. */
static int check_out(j_decompress_ptr cinfo, PyObject *out_planes, PyObject *out_tables, Py_ssize_t index,
                     char **dest, int32_t **table_dest, char *why) {
    int nc = cinfo->num_components;
    if (!PyTuple_Check(out_planes) || !PyTuple_Check(out_tables) ||
        PyTuple_GET_SIZE(out_planes) != PyTuple_GET_SIZE(out_tables)) {
        snprintf(why, MSG_LEN, "out_planes and out_tables must be tuples of as many arrays");
        return 0;
    }
    if (PyTuple_GET_SIZE(out_planes) != nc) {
        snprintf(why, MSG_LEN, "the JPEG has %d component(s), the batch %ld: another layout", nc,
                 (long)PyTuple_GET_SIZE(out_planes));
        return -1;
    }
    for (int c = 0; c < nc; c++) {
        jpeg_component_info *comp = &cinfo->comp_info[c];
        PyObject *p = PyTuple_GET_ITEM(out_planes, c), *t = PyTuple_GET_ITEM(out_tables, c);
        if (!PyArray_Check(p) || !PyArray_Check(t)) {
            snprintf(why, MSG_LEN, "out_planes and out_tables must hold numpy arrays");
            return 0;
        }
        PyArrayObject *a = (PyArrayObject *)p, *b = (PyArrayObject *)t;
        npy_intp *d = PyArray_DIMS(a), *e = PyArray_DIMS(b);
        if (PyArray_TYPE(a) != NPY_INT16 || PyArray_NDIM(a) != 5 || !PyArray_IS_C_CONTIGUOUS(a) ||
            !PyArray_ISWRITEABLE(a) || PyArray_TYPE(b) != NPY_INT32 || PyArray_NDIM(b) != 2 ||
            !PyArray_IS_C_CONTIGUOUS(b) || !PyArray_ISWRITEABLE(b) || e[1] != DCTSIZE2 || e[0] != d[0] ||
            d[3] != DCTSIZE || d[4] != DCTSIZE || index < 0 || index >= d[0]) {
            snprintf(why, MSG_LEN, "out arrays of component %d are not writable C-contiguous int16 (N, Hb, Wb, 8, 8) "
                     "and int32 (N, 64) with 0 <= index < N", c);
            return 0;
        }
        if (d[1] != (npy_intp)comp->height_in_blocks || d[2] != (npy_intp)comp->width_in_blocks) {
            snprintf(why, MSG_LEN, "component %d has %ux%u blocks, the batch %ldx%ld: another layout", c,
                     (unsigned)comp->height_in_blocks, (unsigned)comp->width_in_blocks, (long)d[1], (long)d[2]);
            return -1;
        }
        dest[c] = PyArray_BYTES(a) + (size_t)index * (size_t)d[1] * (size_t)d[2] * sizeof(JBLOCK);
        table_dest[c] = (int32_t *)PyArray_DATA(b) + (size_t)index * DCTSIZE2;
    }
    return 1;
}

PyDoc_STRVAR(read_doc,
"read(data, header_only=False, tolerant=False, max_scans=1000, max_pixels=10**8, max_bytes=2**30,\n"
"     out_planes=None, out_tables=None, index=0)\n"
"--\n\n"
"Read a JPEG held in a bytes-like object. Returns (height, width, color_space, progressive,\n"
"arithmetic, scans, components, warnings); each component is (id, (v, h), (size_h, size_w),\n"
"(blocks_h, blocks_w), qtable, coefficients): numpy arrays, qtable int32 (64,) in natural order and\n"
"coefficients int16 (blocks_h, blocks_w, 8, 8) indexed [.., u, v]; both None with header_only (scans is\n"
"then 0). With out_planes and out_tables (tuples, one array per component: int16 (N, Hb, Wb, 8, 8) and\n"
"int32 (N, 64)), the coefficients and tables go into their slot index instead (both returned as None);\n"
"a file whose block grids differ raises LayoutMismatch (the slot is then untouched).\n"
"Raises ReadError with a one-line message.");

static PyObject *jpegread_read(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"data", "header_only", "tolerant", "max_scans", "max_pixels", "max_bytes",
                               "out_planes", "out_tables", "index", NULL};
    Py_buffer view;
    int header_only = 0, tolerant = 0, max_scans = 1000;
    unsigned long long max_pixels = 100000000ULL, max_bytes = 1ULL << 30; /* jpegfx.reader passes its own */
    PyObject *out_planes = Py_None, *out_tables = Py_None;
    Py_ssize_t index = 0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|ppiKKOOn:read", keywords, &view, &header_only, &tolerant,
                                     &max_scans, &max_pixels, &max_bytes, &out_planes, &out_tables, &index))
        return NULL;
    int into = out_planes != Py_None;

    PyObject *result = NULL, *planes[MAX_COMPONENTS] = {NULL}, *qtables[MAX_COMPONENTS] = {NULL};
    char why[MSG_LEN] = "";
    volatile int failed = 0;
    int nc = 0;
    reader *r = take_reader();
    if (r == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    j_decompress_ptr cinfo = &r->cinfo;
    r->err.tolerant = tolerant;
    r->err.max_scans = max_scans > 0 ? max_scans : 1;

    /* Phase 1, without the GIL: the header, and every check that needs no entropy decoding. */
    Py_BEGIN_ALLOW_THREADS
    if (setjmp(r->err.escape)) {
        failed = 1;
    } else {
        cinfo->mem->max_memory_to_use = (long)(max_bytes > (unsigned long long)LONG_MAX ? LONG_MAX : max_bytes);
        jpeg_mem_src(cinfo, (const unsigned char *)view.buf, (unsigned long)view.len);
        jpeg_read_header(cinfo, TRUE);
    }
    Py_END_ALLOW_THREADS
    if (failed)
        goto fail;

    nc = cinfo->num_components;
    int vmax = cinfo->max_v_samp_factor, hmax = cinfo->max_h_samp_factor;
    const char *space_name = check_header(cinfo, max_pixels, max_bytes, header_only, why);
    if (space_name == NULL)
        goto refuse;
    PyObject *space = PyUnicode_FromString(space_name);
    if (space == NULL)
        goto error;
    int progressive = cinfo->progressive_mode, arithmetic = cinfo->arith_code;
    char *dest[MAX_COMPONENTS];
    int32_t *table_dest[MAX_COMPONENTS];
    if (!header_only && into) {
        int fits = check_out(cinfo, out_planes, out_tables, index, dest, table_dest, why);
        if (fits < 1) {
            Py_DECREF(space);
            if (fits < 0)
                goto mismatch;
            goto refuse;
        }
    } else if (!header_only) {
        for (int c = 0; c < nc; c++) {
            jpeg_component_info *comp = &cinfo->comp_info[c];
            npy_intp dims[4] = {(npy_intp)comp->height_in_blocks, (npy_intp)comp->width_in_blocks, DCTSIZE, DCTSIZE};
            planes[c] = PyArray_SimpleNew(4, dims, NPY_INT16);
            if (planes[c] == NULL) {
                Py_DECREF(space);
                goto error;
            }
            dest[c] = PyArray_BYTES((PyArrayObject *)planes[c]);
        }
    }
    if (!header_only) {
        /* Phase 2, without the GIL: every scan, then a copy of each component's logical block grid. */
        Py_BEGIN_ALLOW_THREADS
        if (setjmp(r->err.escape)) {
            failed = 1;
        } else {
            read_scans(r, dest, NULL, why); /* tables below, with the GIL */
        }
        Py_END_ALLOW_THREADS
        if (failed) {
            Py_DECREF(space);
            goto fail;
        }
    }

    PyObject *comps = PyList_New(nc);
    PyObject *warnings = PyList_New(0);
    if (comps == NULL || warnings == NULL) {
        Py_XDECREF(comps);
        Py_XDECREF(warnings);
        Py_DECREF(space);
        goto error;
    }
    if (!header_only) {
        for (int c = 0; c < nc; c++) {
            /* The table latched when the component's first scan started: the one a decoder uses. */
            JQUANT_TBL *q = cinfo->comp_info[c].quant_table;
            if (q == NULL) {
                snprintf(why, MSG_LEN, "corrupt JPEG: no scan holds data of component %d",
                         cinfo->comp_info[c].component_id);
                Py_DECREF(comps);
                Py_DECREF(warnings);
                Py_DECREF(space);
                goto refuse;
            }
            if (into) {
                for (int k = 0; k < DCTSIZE2; k++)
                    table_dest[c][k] = q->quantval[k];
                continue;
            }
            npy_intp dims[1] = {DCTSIZE2};
            qtables[c] = PyArray_SimpleNew(1, dims, NPY_INT32);
            if (qtables[c] == NULL) {
                Py_DECREF(comps);
                Py_DECREF(warnings);
                Py_DECREF(space);
                goto error;
            }
            int32_t *values = (int32_t *)PyArray_DATA((PyArrayObject *)qtables[c]);
            for (int k = 0; k < DCTSIZE2; k++)
                values[k] = q->quantval[k];
        }
    }
    for (int c = 0; c < nc; c++) {
        jpeg_component_info *comp = &cinfo->comp_info[c];
        /* The component's logical size (ITU T.81 A.1.1). */
        unsigned size_h = (unsigned)(((unsigned long long)cinfo->image_height * comp->v_samp_factor + vmax - 1) / vmax);
        unsigned size_w = (unsigned)(((unsigned long long)cinfo->image_width * comp->h_samp_factor + hmax - 1) / hmax);
        PyObject *item = Py_BuildValue("(i(ii)(II)(II)OO)", comp->component_id, comp->v_samp_factor,
                                       comp->h_samp_factor, size_h, size_w, (unsigned)comp->height_in_blocks,
                                       (unsigned)comp->width_in_blocks, qtables[c] == NULL ? Py_None : qtables[c],
                                       planes[c] == NULL ? Py_None : planes[c]);
        if (item == NULL) {
            Py_DECREF(comps);
            Py_DECREF(warnings);
            Py_DECREF(space);
            goto error;
        }
        PyList_SET_ITEM(comps, c, item);
    }
    for (int i = 0; i < r->err.num_warnings && i < MAX_KEPT_WARNINGS; i++) {
        PyObject *w = PyUnicode_DecodeLatin1(r->err.warnings[i], (Py_ssize_t)strlen(r->err.warnings[i]), NULL);
        if (w == NULL || PyList_Append(warnings, w) < 0) {
            Py_XDECREF(w);
            Py_DECREF(comps);
            Py_DECREF(warnings);
            Py_DECREF(space);
            goto error;
        }
        Py_DECREF(w);
    }
    if (r->err.num_warnings > MAX_KEPT_WARNINGS) {
        PyObject *w = PyUnicode_FromFormat("... and %d more warnings", r->err.num_warnings - MAX_KEPT_WARNINGS);
        if (w != NULL) {
            PyList_Append(warnings, w);
            Py_DECREF(w);
        }
    }
    result = Py_BuildValue("(IINNNiNN)", cinfo->image_height, cinfo->image_width, space,
                           PyBool_FromLong(progressive), PyBool_FromLong(arithmetic),
                           header_only ? 0 : cinfo->input_scan_number, comps, warnings);
    goto done;

fail: /* libjpeg refused the data: the message is in r->err.message */
    PyErr_SetString(ReadError, r->err.message);
    goto done;
refuse: /* a check of ours refused the header */
    PyErr_SetString(ReadError, why);
    goto done;
mismatch: /* a readable file of another layout than the caller's batch */
    PyErr_SetString(LayoutMismatch, why);
    goto done;
error: /* a Python error is already set */
done:
    for (int c = 0; c < MAX_COMPONENTS; c++) {
        Py_XDECREF(planes[c]);
        Py_XDECREF(qtables[c]);
    }
    return_reader(r); /* jpeg_abort_decompress: safe in any state, also after a longjmp */
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(read_many_doc,
"read_many(datas, out_planes, out_tables, start, height, width, samplings, max_scans=1000,\n"
"          max_pixels=10**8, max_bytes=2**30)\n"
"--\n\n"
"Read a list of bytes-like JPEGs of one layout into a caller's batch (see read: out_planes, out_tables),\n"
"the k-th good file into slot start + k, in one call without the GIL, with every warning an error.\n"
"height, width and samplings ((v, h) per component) are the batch's layout. Returns a list with, per\n"
"file, its slot (int), a one-line error (str), or None for a readable file of another layout (its scans\n"
"are not decoded when its header shows it).");

/* One file into its slot (no GIL): 1 read, 0 refused (why), -1 another layout. */
static int read_one_into(reader *r, const void *buf, size_t len, unsigned height, unsigned width, int nc,
                         const int *vs, const int *hs, int max_scans, unsigned long long max_pixels,
                         unsigned long long max_bytes, char **dest, int32_t **table_dest, char *why) {
    j_decompress_ptr cinfo = &r->cinfo;
    r->err.tolerant = 0;
    r->err.max_scans = max_scans > 0 ? max_scans : 1;
    r->err.num_warnings = 0;
    r->err.pub.num_warnings = 0;
    if (setjmp(r->err.escape)) {
        snprintf(why, MSG_LEN, "%s", r->err.message);
        jpeg_abort_decompress(cinfo);
        return 0;
    }
    if (len == 0) {
        snprintf(why, MSG_LEN, "empty input: not a JPEG file");
        return 0;
    }
    cinfo->mem->max_memory_to_use = (long)(max_bytes > (unsigned long long)LONG_MAX ? LONG_MAX : max_bytes);
    jpeg_mem_src(cinfo, (const unsigned char *)buf, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
    int status = 1;
    if (check_header(cinfo, max_pixels, max_bytes, 0, why) == NULL) {
        status = 0;
    } else if (cinfo->image_height != height || cinfo->image_width != width || cinfo->num_components != nc) {
        status = -1;
    } else {
        for (int c = 0; c < nc; c++)
            if (cinfo->comp_info[c].v_samp_factor != vs[c] || cinfo->comp_info[c].h_samp_factor != hs[c])
                status = -1;
    }
    if (status == 1 && !read_scans(r, dest, table_dest, why))
        status = 0;
    jpeg_abort_decompress(cinfo);
    return status;
}

static PyObject *jpegread_read_many(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"datas", "out_planes", "out_tables", "start", "height", "width", "samplings",
                               "max_scans", "max_pixels", "max_bytes", NULL};
    PyObject *datas, *out_planes, *out_tables, *samplings;
    Py_ssize_t start;
    unsigned int height, width;
    int max_scans = 1000;
    unsigned long long max_pixels = 100000000ULL, max_bytes = 1ULL << 30;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!nIIO!|iKK:read_many", keywords, &PyList_Type, &datas,
                                     &PyTuple_Type, &out_planes, &PyTuple_Type, &out_tables, &start, &height,
                                     &width, &PyTuple_Type, &samplings, &max_scans, &max_pixels, &max_bytes))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(datas), nc = PyTuple_GET_SIZE(samplings);
    if (nc < 1 || nc > MAX_COMPONENTS || PyTuple_GET_SIZE(out_planes) != nc || PyTuple_GET_SIZE(out_tables) != nc) {
        PyErr_SetString(PyExc_ValueError, "samplings, out_planes and out_tables need one entry per component");
        return NULL;
    }
    int vs[MAX_COMPONENTS], hs[MAX_COMPONENTS];
    char *base[MAX_COMPONENTS];
    int32_t *table_base[MAX_COMPONENTS];
    npy_intp slot_bytes[MAX_COMPONENTS], capacity = -1;
    for (Py_ssize_t c = 0; c < nc; c++) {
        PyObject *f = PyTuple_GET_ITEM(samplings, c), *p = PyTuple_GET_ITEM(out_planes, c),
                 *t = PyTuple_GET_ITEM(out_tables, c);
        if (!PyArg_ParseTuple(f, "ii", &vs[c], &hs[c]))
            return NULL;
        if (!PyArray_Check(p) || !PyArray_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "out_planes and out_tables must hold numpy arrays");
            return NULL;
        }
        PyArrayObject *a = (PyArrayObject *)p, *b = (PyArrayObject *)t;
        npy_intp *d = PyArray_DIMS(a), *e = PyArray_DIMS(b);
        if (PyArray_TYPE(a) != NPY_INT16 || PyArray_NDIM(a) != 5 || !PyArray_IS_C_CONTIGUOUS(a) ||
            !PyArray_ISWRITEABLE(a) || PyArray_TYPE(b) != NPY_INT32 || PyArray_NDIM(b) != 2 ||
            !PyArray_IS_C_CONTIGUOUS(b) || !PyArray_ISWRITEABLE(b) || e[1] != DCTSIZE2 || e[0] != d[0] ||
            d[3] != DCTSIZE || d[4] != DCTSIZE || (capacity >= 0 && d[0] != capacity)) {
            PyErr_SetString(PyExc_ValueError, "out arrays must be writable C-contiguous int16 (N, Hb, Wb, 8, 8) and "
                            "int32 (N, 64), one N");
            return NULL;
        }
        capacity = d[0];
        base[c] = PyArray_BYTES(a);
        table_base[c] = (int32_t *)PyArray_DATA(b);
        slot_bytes[c] = d[1] * d[2] * (npy_intp)sizeof(JBLOCK);
    }
    if (start < 0 || start + n > capacity) {
        PyErr_SetString(PyExc_ValueError, "the batch has too few slots for the files");
        return NULL;
    }
    Py_buffer *views = (Py_buffer *)PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(Py_buffer));
    int *status = (int *)PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(int));
    char *messages = (char *)PyMem_Calloc((size_t)(n > 0 ? n : 1), MSG_LEN);
    PyObject *result = NULL;
    Py_ssize_t got = 0, slot = start;
    reader *r = NULL;
    if (views == NULL || status == NULL || messages == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(datas, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
    r = take_reader();
    if (r == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Every file's blocks must fit the batch's grids: a file with the batch's size and sampling
     * factors has them (checked per file above); the slot pointers follow from the arrays' shapes. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n; k++) {
        char *dest[MAX_COMPONENTS];
        int32_t *table_dest[MAX_COMPONENTS];
        for (Py_ssize_t c = 0; c < nc; c++) {
            dest[c] = base[c] + (size_t)slot * (size_t)slot_bytes[c];
            table_dest[c] = table_base[c] + (size_t)slot * DCTSIZE2;
        }
        status[k] = read_one_into(r, views[k].buf, (size_t)views[k].len, height, width, (int)nc, vs, hs, max_scans,
                                  max_pixels, max_bytes, dest, table_dest, messages + (size_t)k * MSG_LEN);
        if (status[k] == 1)
            slot++;
    }
    Py_END_ALLOW_THREADS
    return_reader(r);
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    slot = start;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item;
        if (status[k] == 1)
            item = PyLong_FromSsize_t(slot++);
        else if (status[k] == 0)
            item = PyUnicode_DecodeLatin1(messages + (size_t)k * MSG_LEN, (Py_ssize_t)strlen(messages + (size_t)k * MSG_LEN),
                                          NULL);
        else
            item = Py_NewRef(Py_None);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, k, item);
    }
done:
    for (Py_ssize_t k = 0; k < got; k++)
        PyBuffer_Release(&views[k]);
    PyMem_Free(views);
    PyMem_Free(status);
    PyMem_Free(messages);
    return result;
}

static PyMethodDef methods[] = {
    {"read", (PyCFunction)(void (*)(void))jpegread_read, METH_VARARGS | METH_KEYWORDS, read_doc},
    {"read_many", (PyCFunction)(void (*)(void))jpegread_read_many, METH_VARARGS | METH_KEYWORDS, read_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegread",
    "Thin binding to libjpeg(-turbo)'s coefficient API; see jpegfx.jpeg.read_jpeg.", -1, methods,
};

PyMODINIT_FUNC PyInit__jpegread(void) {
    import_array();
    idle_key_ok = pthread_key_create(&idle_key, destroy_reader) == 0;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    ReadError = PyErr_NewException("jpegfx._jpegread.ReadError", NULL, NULL);
    if (ReadError == NULL || PyModule_AddObjectRef(m, "ReadError", ReadError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    LayoutMismatch = PyErr_NewException("jpegfx._jpegread.LayoutMismatch", NULL, NULL);
    if (LayoutMismatch == NULL || PyModule_AddObjectRef(m, "LayoutMismatch", LayoutMismatch) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    char version[32];
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
    snprintf(version, sizeof version, "libjpeg-turbo %d.%d.%d", LIBJPEG_TURBO_VERSION_NUMBER / 1000000,
             LIBJPEG_TURBO_VERSION_NUMBER / 1000 % 1000, LIBJPEG_TURBO_VERSION_NUMBER % 1000);
#else
    snprintf(version, sizeof version, "libjpeg %d", JPEG_LIB_VERSION);
#endif
    if (PyModule_AddStringConstant(m, "LIBJPEG_VERSION", version) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
