/* In-process timing of libwbxml's WBXML -> XML conversion, the counterpart of our
 * `decode_loop` example: same files, same number of iterations, no process start-up.
 * Built and run by benches/wbxml-vs-libwbxml.sh. Usage: libwbxml_loop ITERATIONS FILE... */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <wbxml/wbxml.h>
#include <wbxml/wbxml_conv.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ITERATIONS FILE...\n", argv[0]);
        return 2;
    }
    int iterations = atoi(argv[1]);
    for (int f = 2; f < argc; f++) {
        FILE *in = fopen(argv[f], "rb");
        if (!in) { perror(argv[f]); return 1; }
        fseek(in, 0, SEEK_END);
        long len = ftell(in);
        fseek(in, 0, SEEK_SET);
        unsigned char *buf = malloc(len);
        if (fread(buf, 1, len, in) != (size_t)len) { perror("read"); return 1; }
        fclose(in);
        double start = now();
        for (int i = 0; i < iterations; i++) {
            WBXMLConvWBXML2XML *conv = NULL;
            WB_UTINY *xml = NULL;
            WB_ULONG xml_len = 0;
            wbxml_conv_wbxml2xml_create(&conv);
            wbxml_conv_wbxml2xml_set_language(conv, WBXML_LANG_ACTIVESYNC);
            wbxml_conv_wbxml2xml_set_gen_type(conv, WBXML_GEN_XML_INDENT);
            wbxml_conv_wbxml2xml_set_indent(conv, 1);
            WBXMLError err = wbxml_conv_wbxml2xml_run(conv, buf, len, &xml, &xml_len);
            wbxml_conv_wbxml2xml_destroy(conv);
            if (err != WBXML_OK) {
                fprintf(stderr, "%s: %s\n", argv[f], wbxml_errors_string(err));
                return 1;
            }
            free(xml);
        }
        double secs = (now() - start) / iterations;
        printf("%s\t%ld\t%.3f\t%.1f\n", argv[f], len, secs * 1e3, len / secs / 1e6);
        free(buf);
    }
    return 0;
}
