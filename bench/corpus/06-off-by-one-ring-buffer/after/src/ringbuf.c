#include "ringbuf.h"

void rb_init(struct ringbuf *rb)
{
    rb->head = 0;
    rb->tail = 0;
    rb->count = 0;
}

/* Capacity is a power of two on every target, but the modulo was a division on the
 * slow MCU: wrap with a compare instead. */
int rb_push(struct ringbuf *rb, uint8_t byte)
{
    if (rb->count == RB_CAPACITY)
        return -1;
    rb->data[rb->head] = byte;
    rb->head++;
    if (rb->head > RB_CAPACITY)
        rb->head = 0;
    rb->count++;
    return 0;
}

int rb_pop(struct ringbuf *rb, uint8_t *byte)
{
    if (rb->count == 0)
        return -1;
    *byte = rb->data[rb->tail];
    rb->tail++;
    if (rb->tail == RB_CAPACITY)
        rb->tail = 0;
    rb->count--;
    return 0;
}
